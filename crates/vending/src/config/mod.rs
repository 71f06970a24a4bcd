//! Customer configuration: TOML files → raw structs → validated model.

pub mod load;
pub mod model;
pub mod raw;
pub mod schema;
pub mod validate;
