//! Dialects: codecs between one seed system's wire messages and the engine's commands and
//! events. No IO here; each dialect is one module.

pub mod pact;

/// The wire protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    Pact,
}
