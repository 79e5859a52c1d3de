//! The one place a connection to a Redis server is opened: the command and subscriber
//! connections of every core, to a standalone Redis or to any master of a Cluster, all
//! come through [`open`]. (Authentication and TLS, when `--redis-url` carries them, belong
//! here too, so that every connection gets them.)

use monoio::net::TcpStream;
use std::net::SocketAddr;

/// Opens a connection to the Redis server at `addr`, ready for commands.
pub async fn open(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_addr(addr).await?;
    // Commands are small and pipelined: a reply must not wait for the next write.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
