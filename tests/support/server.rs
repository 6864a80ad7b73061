//! An emulator's HTTP server on its own thread and runtime: start on port 0, stop (so the
//! gateway sees connection refused), restart on the same port.

use std::net::SocketAddr;

use axum::Router;

pub struct Server {
    pub addr: SocketAddr,
    app: Router,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
}

impl Server {
    pub fn start(app: Router) -> Server {
        let mut s = Server {
            addr: "127.0.0.1:0".parse().unwrap(),
            app,
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
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let server = axum::serve(listener, app).with_graceful_shutdown(async {
                    let _ = rx.await;
                });
                let _ = server.await;
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
