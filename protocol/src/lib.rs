//! Wire types of Rookery's native dialect, `pact`, shared by the server and the browser SDK so
//! that both sides agree on one schema.
//!
//! A frame in either direction is a JSON object `{type, data?, ref?}`. Plain Pact clients
//! never send `ref`; the SDK does, and then gets exactly one direct reply carrying it.

pub mod pact;
