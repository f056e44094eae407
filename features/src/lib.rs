//! sgml-features: the data layer of sellglobal-ml.
//!
//! - [`contract`]: the tables, their columns and rules (one place);
//! - [`values`]: parsing raw text into contract types;
//! - [`validate`]: validation and quarantine, anonymizing as it goes;
//! - [`anonymize`]: customer keys, scrubbing, masking;
//! - [`fx`]: conversion to the base currency;
//! - [`geo`]: country regions;
//! - [`language`]: the language of a title (ISO 639-1), when not declared;
//! - [`builders`]: the feature tables as polars lazy queries;
//! - [`quote`]: input values echoed into messages, briefly.
//!
//! Nothing here touches a store or a path: `sgml-pipelines` owns all I/O.

pub mod anonymize;
pub mod builders;
pub mod contract;
pub mod fx;
pub mod geo;
pub mod language;
pub mod quote;
pub mod validate;
pub mod values;

pub use contract::Table;
