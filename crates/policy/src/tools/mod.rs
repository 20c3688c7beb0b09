//! Which tools are seen, and under which names: ToolHive's tool filter (`--tools`) and
//! overrides (`--tools-override`). [`ToolPolicy`] decides; [`shape_list`] and
//! [`with_call_name`] apply the decision to messages without re-serialising them.

mod policy;
mod shape;

pub use policy::{Hidden, ItemFate, ToolPolicy, ToolsConfigError, parse_overrides_file};
pub use shape::{ListItem, ListKind, ShapeError, shape_list, with_call_name};
