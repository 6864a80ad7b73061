/// Reads at most `max` bytes of a response body; the rest is left unread (the connection is
/// then not reused). A body that fails half-way gives what arrived: the caller classifies the
/// status, the body is only its detail.
pub async fn read_bounded(resp: &mut reqwest::Response, max: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = max - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= max {
            break;
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_large_body_is_read_only_up_to_the_bound() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request).await;
            let body = vec![b'x'; 4 << 20];
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            conn.write_all(head.as_bytes()).await.unwrap();
            let _ = conn.write_all(&body).await; // the client stops reading
        });
        let mut resp = reqwest::get(format!("http://{addr}/")).await.unwrap();
        let body = super::read_bounded(&mut resp, 1000).await;
        assert_eq!(body.len(), 1000);
        assert!(body.iter().all(|b| *b == b'x'));
    }
}
