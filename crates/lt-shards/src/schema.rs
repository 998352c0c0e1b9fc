//! The Arrow schema of a shard and its metadata.

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use std::collections::HashMap;
use std::sync::Arc;

/// Our own schema-metadata key (split name and per-class counts).
pub const LT_META_KEY: &str = "lt_glmc";

/// Fields of the HF `Image` struct.
pub(crate) fn image_fields() -> Fields {
    Fields::from(vec![Field::new("bytes", DataType::Binary, true), Field::new("path", DataType::Utf8, true)])
}

/// The `huggingface` metadata value: features with `Image` and `ClassLabel`.
pub fn hf_features_json(class_names: &[String]) -> serde_json::Value {
    serde_json::json!({
        "info": {
            "features": {
                "image": {"_type": "Image"},
                "label": {"names": class_names, "_type": "ClassLabel"},
                "source_index": {"dtype": "int64", "_type": "Value"},
                "height": {"dtype": "int32", "_type": "Value"},
                "width": {"dtype": "int32", "_type": "Value"}
            }
        }
    })
}

/// The schema of one split's shards, with both metadata keys. Every field
/// is nullable because HF `datasets` applies the `huggingface` features only
/// where they match the Arrow fields exactly, nullability included.
pub fn shard_schema(class_names: &[String], split: &str, class_counts: &[usize]) -> SchemaRef {
    let fields = vec![
        Field::new("image", DataType::Struct(image_fields()), true),
        Field::new("label", DataType::Int64, true),
        Field::new("source_index", DataType::Int64, true),
        Field::new("height", DataType::Int32, true),
        Field::new("width", DataType::Int32, true),
    ];
    let mut meta = HashMap::new();
    meta.insert("huggingface".to_string(), hf_features_json(class_names).to_string());
    meta.insert(
        LT_META_KEY.to_string(),
        serde_json::json!({
            "format": crate::FORMAT,
            "split": split,
            "class_counts": class_counts,
        })
        .to_string(),
    );
    Arc::new(Schema::new_with_metadata(fields, meta))
}
