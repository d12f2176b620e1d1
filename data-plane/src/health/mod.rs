//! Health on the data plane: the windows it reports for the control plane's
//! fleet view, the local signals it routes on between snapshots, and the
//! probes that tell whether an idle or ejected target is back.

mod local;
pub mod prober;
mod windows;

pub use local::{InFlight, LocalSignals, LocalView};
pub use windows::{Sample, WindowBuilder};
