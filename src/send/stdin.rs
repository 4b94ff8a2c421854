//! Standard input, read on a thread of its own.
//!
//! The socket lives in a small mio loop. Standard input does not: it may be
//! a regular file, which epoll refuses to watch, or a terminal or pipe shared
//! with the shell, where setting `O_NONBLOCK` would change the file for every
//! other process holding it. So one helper thread does plain blocking reads
//! and hands chunks over a *bounded* channel, waking the loop with a
//! [`mio::Waker`]. The bound keeps memory flat whatever the input size: when
//! the server stops reading, our writes stop, the channel fills, and the
//! thread blocks.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread;

use mio::Waker;

use super::error::SendError;

/// Bytes per `read` from standard input (and from the socket). 64 KiB
/// moves bulk data in few system calls and is nothing next to the socket
/// buffers.
pub(super) const CHUNK: usize = 64 * 1024;

/// Chunks standard input may run ahead of the socket: with [`CHUNK`], at most
/// 256 KiB waits in the channel however large the input.
pub(super) const STDIN_AHEAD: usize = 4;

/// What the standard input thread hands over.
pub(super) enum Piece {
    Data(Vec<u8>),
    End,
    Failed(io::Error),
}

/// Starts the thread that reads standard input with plain blocking reads and
/// passes chunks to the loop through a channel of [`STDIN_AHEAD`] places.
pub(super) fn spawn_stdin_reader(waker: Arc<Waker>) -> Result<Receiver<Piece>, SendError> {
    let (tx, rx) = mpsc::sync_channel(STDIN_AHEAD);
    thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_stdin(&tx, &waker))
        .map_err(|source| SendError::Local {
            what: "start the standard input thread",
            source,
        })?;
    Ok(rx)
}

fn read_stdin(tx: &SyncSender<Piece>, waker: &Waker) {
    let mut stdin = io::stdin().lock();
    loop {
        let mut chunk = vec![0; CHUNK];
        let piece = match stdin.read(&mut chunk) {
            Ok(0) => Piece::End,
            Ok(n) => {
                chunk.truncate(n);
                Piece::Data(chunk)
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => Piece::Failed(error),
        };
        let last = !matches!(piece, Piece::Data(_));
        // The loop has finished and dropped the receiver: nobody to feed.
        if tx.send(piece).is_err() {
            return;
        }
        if let Err(error) = waker.wake() {
            log::error!("cannot wake the send loop: {error}");
        }
        if last {
            return;
        }
    }
}
