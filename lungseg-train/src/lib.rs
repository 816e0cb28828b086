pub fn x() {}
pub mod metrics;
pub mod report;
