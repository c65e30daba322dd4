//! The memory protected requests may hold at once (`--max-buffered-mib`).
//!
//! A protected request's body is read whole, and a stored response is read
//! whole before it is stored: without a bound across requests, enough
//! clients sending large bodies at once would take all the memory there
//! is. Each request reserves what it reads as it reads it, and, before its
//! claim, the room its response may need; one that finds no room is
//! refused (503) before anything is claimed or forwarded, so the refusal is
//! always safe to retry.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget, in KiB permits. Cheap to clone.
#[derive(Clone)]
pub struct BufferBudget {
    kib: Arc<Semaphore>,
}

/// What one request holds of the budget; given back when dropped.
#[derive(Default)]
pub struct Reserved {
    permit: Option<OwnedSemaphorePermit>,
    /// The bytes asked for so far. Permits follow their sum, rounded up
    /// once: a body that arrives in many small frames costs what it weighs,
    /// not a KiB a frame.
    bytes: usize,
}

/// The budget has no room for what a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom;

impl BufferBudget {
    pub fn new(bytes: usize) -> Self {
        Self {
            kib: Arc::new(Semaphore::new(kib(bytes) as usize)),
        }
    }

    /// Adds room for `bytes` more to `held`, or refuses at once.
    pub fn reserve(&self, held: &mut Reserved, bytes: usize) -> Result<(), NoRoom> {
        let total = held.bytes.saturating_add(bytes);
        let have = held
            .permit
            .as_ref()
            .map_or(0, |permit| permit.num_permits());
        let missing = (kib(total) as usize).saturating_sub(have);
        if missing > 0 {
            let more = self
                .kib
                .clone()
                .try_acquire_many_owned(u32::try_from(missing).unwrap_or(u32::MAX))
                .map_err(|_| NoRoom)?;
            match &mut held.permit {
                Some(permit) => permit.merge(more),
                None => held.permit = Some(more),
            }
        }
        held.bytes = total;
        Ok(())
    }
}

fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_taken_as_requests_read_and_given_back_when_they_end() {
        let budget = BufferBudget::new(10 * 1024);
        let mut first = Reserved::default();
        budget.reserve(&mut first, 6 * 1024).unwrap();
        let mut second = Reserved::default();
        assert_eq!(budget.reserve(&mut second, 5 * 1024), Err(NoRoom));
        budget.reserve(&mut second, 4 * 1024).unwrap();
        assert_eq!(budget.reserve(&mut first, 1), Err(NoRoom));
        drop(first);
        budget.reserve(&mut second, 6 * 1024).unwrap();
    }

    #[test]
    fn many_small_frames_cost_what_they_weigh() {
        let budget = BufferBudget::new(4 * 1024);
        let mut held = Reserved::default();
        // 4 KiB in 100-byte frames: 41 frames would be 41 KiB at a KiB each.
        for _ in 0..40 {
            budget.reserve(&mut held, 100).unwrap();
        }
        assert_eq!(held.permit.as_ref().map(|p| p.num_permits()), Some(4));
        let mut other = Reserved::default();
        assert_eq!(budget.reserve(&mut other, 1), Err(NoRoom));
    }
}
