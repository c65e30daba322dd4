//! What the claim lifecycles' unit tests share.

use crate::lifecycle::Subject;

/// The key every test claims, as a 503 would name it.
pub const SUBJECT: Subject<'static> = Subject {
    name: "k",
    namespace: "ns",
};
