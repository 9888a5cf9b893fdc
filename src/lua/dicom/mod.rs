//! The Lua side of the DICOM hooks: `on_associate(assoc, ctx)` and
//! `on_dimse(msg, ctx)`, the `assoc`, `msg` and data set objects, and
//! `harmony.reject`. No sockets here: the runtime builds `AssocInfo` and
//! `DimseState` values, calls the host and acts on the `DicomOutcome`.

mod assoc;
mod calls;
mod dataset;
mod dataset_lua;
mod msg;
mod prescan;
mod raw;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_raw;
#[cfg(test)]
mod tests_scripts;

pub use assoc::{AssocInfo, ProposedContext};
pub use calls::{DicomOutcome, DicomPending};
pub use dataset::{Dataset, DatasetState};
pub use msg::{next_message_id, DimseMsg, DimseState};

pub(crate) use calls::reject_function;
pub(crate) use msg::{DimseSlot, DimseUd};
