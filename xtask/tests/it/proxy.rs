//! A loopback TCP proxy in front of the emulator, for what the emulator cannot do by itself: be
//! slow. Each connection is held for `delay` before it is forwarded (moto closes the connection
//! after every answer, so that is a delay per request), which stretches a local Packer build from a
//! third of a second to several seconds: long enough to interrupt it at a known step.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

pub struct Proxy {
    pub port: u16,
}

impl Proxy {
    pub fn start(upstream: u16, delay: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { return };
                    pipe(client, server);
                });
            }
        });
        Proxy { port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Copies both ways until each side closes.
fn pipe(client: TcpStream, server: TcpStream) {
    let (mut client_read, mut server_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let upstream = std::thread::spawn(move || {
        copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(Shutdown::Write);
    });
    let (mut server_read, mut client_write) = (server, client);
    copy(&mut server_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Write);
    let _ = upstream.join();
}

fn copy(from: &mut TcpStream, to: &mut TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buffer) {
        if n == 0 || to.write_all(&buffer[..n]).is_err() {
            return;
        }
    }
}
