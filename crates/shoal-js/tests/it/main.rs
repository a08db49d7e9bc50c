//! The engine pool as the node uses it, in one test binary like every
//! crate's (`tests/it`, one module per area).
//!
//! - [`engine`]: scripts load and run, nested calls resolve, limits hold.

mod engine;
