//! Compute: the records behind the Compute API v2.1 and the [`driver::Driver`] seam to the host
//! that runs the guests.

pub mod driver;
