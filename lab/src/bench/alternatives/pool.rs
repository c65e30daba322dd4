//! A fixed set of connections lent out one per operation in flight, as a
//! client library's pool does: an operation waits for a free connection
//! rather than queueing behind another one's request on the same socket.
//! With as many connections as the closed loop has workers, no worker
//! ever waits.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use tokio::sync::{Semaphore, SemaphorePermit};

pub struct Pool<C> {
    idle: Mutex<Vec<C>>,
    free: Semaphore,
}

impl<C> Pool<C> {
    pub fn new(connections: Vec<C>) -> Self {
        Self {
            free: Semaphore::new(connections.len()),
            idle: Mutex::new(connections),
        }
    }

    /// A connection of its own until the lease is dropped.
    pub async fn lease(&self) -> Lease<'_, C> {
        let permit = self
            .free
            .acquire()
            .await
            .expect("the pool's semaphore is never closed");
        let connection = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
            .expect("a permit stands for an idle connection");
        Lease {
            pool: self,
            connection: Some(connection),
            _permit: permit,
        }
    }
}

pub struct Lease<'a, C> {
    pool: &'a Pool<C>,
    connection: Option<C>,
    // Released after the connection is back (fields drop after `drop`).
    _permit: SemaphorePermit<'a>,
}

impl<C> Deref for Lease<'_, C> {
    type Target = C;

    fn deref(&self) -> &C {
        self.connection.as_ref().expect("leased until dropped")
    }
}

impl<C> DerefMut for Lease<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        self.connection.as_mut().expect("leased until dropped")
    }
}

impl<C> Drop for Lease<'_, C> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(connection);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_lease_has_a_connection_of_its_own_and_gives_it_back() {
        let pool = Pool::new(vec![1, 2]);
        let (a, b) = (pool.lease().await, pool.lease().await);
        assert_ne!(*a, *b);
        let third = tokio::time::timeout(std::time::Duration::from_millis(20), pool.lease());
        assert!(third.await.is_err(), "a third lease waits for a free one");
        drop(a);
        let mut again = pool.lease().await;
        *again += 10;
        drop(again);
        drop(b);
        let mut all: Vec<i32> = pool.idle.lock().unwrap().clone();
        all.sort();
        assert!(all == vec![2, 11] || all == vec![1, 12], "{all:?}");
    }
}
