//! The control socket's server side: the protocol (requests, responses, [`send`]) is the
//! VMM's public contract, in `vmm_contract::control`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
pub use vmm_contract::control::*;

/// Handles one request.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// Binds `path` and serves it on its own thread.
pub fn spawn(path: &Path, handler: Handler) -> Result<(), ControlError> {
    let io = |source| ControlError::Io {
        path: path.display().to_string(),
        source,
    };
    let listener = UnixListener::bind(path).map_err(io)?;
    std::thread::Builder::new()
        .name("virga-control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => serve(s, &handler),
                    Err(e) => tracing::warn!("control socket accept: {e}"),
                }
            }
        })
        .map_err(io)?;
    Ok(())
}

fn serve(stream: UnixStream, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(req) => {
                tracing::debug!(?req, "control request");
                handler(req)
            }
            Err(e) => Response::error(format!("bad request: {e}")),
        };
        let Ok(mut text) = serde_json::to_string(&response) else {
            return;
        };
        text.push('\n');
        if out.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_over_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl");
        spawn(
            &path,
            Arc::new(|r| {
                if r == Request::Info {
                    Response::ok()
                } else {
                    Response::error("no")
                }
            }),
        )
        .unwrap();
        assert_eq!(send(&path, &Request::Info).unwrap(), Response::ok());
        assert_eq!(
            send(&path, &Request::Pause).unwrap().error.as_deref(),
            Some("no")
        );
        // Garbage gets an error response, not a dropped connection.
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{nonsense\n").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        let r: Response = serde_json::from_str(&line).unwrap();
        assert!(!r.ok && r.error.unwrap().starts_with("bad request"));
    }
}
