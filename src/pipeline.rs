//! Decode on one thread, apply on this one, in order: how startup reads
//! the WAL and loads a snapshot with both cores.
//!
//! Decoding a record or a snapshot item depends on nothing else; applying
//! must happen one at a time in log order. So a producer thread decodes and
//! hands items over in chunks of `DECODE_CHUNK_ITEMS` through a queue of at
//! most `DECODE_QUEUE_CHUNKS` (a bound on what waits decoded in memory), and
//! the calling thread applies them as they come.
//!
//! The first error wins: if applying fails, the queue is dropped and the
//! producer's next hand-over fails, which stops it; if producing fails, what
//! it decoded before the error is still applied, then its error is returned.

use std::sync::mpsc;

use crate::config::{DECODE_CHUNK_ITEMS, DECODE_QUEUE_CHUNKS};

/// Runs `produce` on a second thread, giving it an `emit` for each decoded
/// item, and `apply`s every item on this thread in the order emitted.
/// `emit` fails with `stopped()` once applying has failed. Returns what
/// `produce` returned.
pub fn decode_then_apply<T, R, E>(
    produce: impl FnOnce(&mut dyn FnMut(T) -> Result<(), E>) -> Result<R, E> + Send,
    mut apply: impl FnMut(T) -> Result<(), E>,
    stopped: impl Fn() -> E + Send,
) -> Result<R, E>
where
    T: Send,
    R: Send,
    E: Send,
{
    let (tx, rx) = mpsc::sync_channel::<Vec<T>>(DECODE_QUEUE_CHUNKS);
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let mut chunk = Vec::with_capacity(DECODE_CHUNK_ITEMS);
            let result = produce(&mut |item| {
                chunk.push(item);
                if chunk.len() == DECODE_CHUNK_ITEMS {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(DECODE_CHUNK_ITEMS));
                    tx.send(full).map_err(|_| stopped())?;
                }
                Ok(())
            });
            if !chunk.is_empty() {
                let _ = tx.send(chunk);
            }
            result
        });
        let mut applied = Ok(());
        'chunks: for chunk in rx.iter() {
            for item in chunk {
                if let Err(e) = apply(item) {
                    applied = Err(e);
                    break 'chunks;
                }
            }
        }
        drop(rx);
        // A panic in the producer is a bug; carry it over rather than hide it.
        let produced = producer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        applied?;
        produced
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_everything_in_order() {
        let mut seen = Vec::new();
        let n = DECODE_CHUNK_ITEMS * 3 + 7;
        let r: Result<&str, String> = decode_then_apply(
            |emit| {
                for i in 0..n {
                    emit(i)?;
                }
                Ok("done")
            },
            |i| {
                seen.push(i);
                Ok(())
            },
            || "stopped".to_string(),
        );
        assert_eq!(r, Ok("done"));
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn an_apply_error_stops_the_producer_and_wins() {
        let mut applied = 0;
        let r: Result<(), String> = decode_then_apply(
            |emit| {
                for i in 0.. {
                    emit(i)?; // returns "stopped" once the applier has failed
                }
                Ok(())
            },
            |i| {
                if i == 10 {
                    return Err(format!("bad item {i}"));
                }
                applied += 1;
                Ok(())
            },
            || "stopped".to_string(),
        );
        assert_eq!(r, Err("bad item 10".to_string()));
        assert_eq!(applied, 10);
    }

    #[test]
    fn a_produce_error_comes_after_everything_before_it_is_applied() {
        let mut seen = Vec::new();
        let r: Result<(), String> = decode_then_apply(
            |emit| {
                for i in 0..5 {
                    emit(i)?;
                }
                Err("corrupt at 5".to_string())
            },
            |i| {
                seen.push(i);
                Ok(())
            },
            || "stopped".to_string(),
        );
        assert_eq!(r, Err("corrupt at 5".to_string()));
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    }
}
