//! An emulator's HTTP server on its own thread and runtime: start on port 0, stop (so the
//! gateway sees connection refused), restart on the same port.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;

pub struct Server {
    pub addr: SocketAddr,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
}

/// A CA and a server certificate for `localhost` / 127.0.0.1, made now.
pub struct TestPki {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

impl TestPki {
    pub fn new() -> TestPki {
        TestPki::for_names(&["localhost"], true)
    }

    /// A server certificate for these DNS names (and 127.0.0.1 when `loopback_ip`).
    pub fn for_names(names: &[&str], loopback_ip: bool) -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "thoth test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if loopback_ip {
            params
                .subject_alt_names
                .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        }
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        TestPki {
            ca_pem: ca.pem(),
            server: Arc::new(server),
        }
    }
}

impl Server {
    pub fn start(app: Router) -> Server {
        Server::start_with(app, None)
    }

    /// Serves HTTPS with this TLS configuration (HTTP when `None`).
    pub fn start_with(app: Router, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let mut s = Server {
            addr: "127.0.0.1:0".parse().unwrap(),
            app,
            tls,
            running: None,
        };
        s.serve();
        s
    }

    fn serve(&mut self) {
        let listener = std::net::TcpListener::bind(self.addr).expect("binding an emulator");
        listener.set_nonblocking(true).unwrap();
        self.addr = listener.local_addr().unwrap();
        let app = self.app.clone();
        let tls = self.tls.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                match tls {
                    None => {
                        let server = axum::serve(listener, app).with_graceful_shutdown(async {
                            let _ = rx.await;
                        });
                        let _ = server.await;
                    }
                    Some(config) => serve_tls(listener, app, config, rx).await,
                }
            });
            // Dropping the runtime closes every open connection too.
        });
        self.running = Some((tx, thread));
    }

    /// Stops listening and closes every connection.
    pub fn stop(&mut self) {
        if let Some((tx, thread)) = self.running.take() {
            let _ = tx.send(());
            let _ = thread.join();
        }
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        self.serve();
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    config: Arc<rustls::ServerConfig>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            // A client that does not trust the certificate ends the handshake here.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}
