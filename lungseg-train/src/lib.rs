pub fn x() {}

pub mod dataset;
pub mod export;
pub mod model;
pub mod train;
