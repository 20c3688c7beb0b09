//! The `elicitation/create` schemas the fixture tools send, written as plain JSON so they read
//! like the conformance scenarios that check them (basic form, SEP-1034 defaults, SEP-1330 enums).

use rmcp::ErrorData as McpError;
use rmcp::model::{ElicitationSchema, JsonObject};
use serde_json::{Value, json};

/// Schema for `test_elicitation`: a username and an email, both required.
pub fn user_info_schema() -> Result<ElicitationSchema, McpError> {
    parse(json!({
        "type": "object",
        "properties": {
            "username": { "type": "string", "description": "User's response" },
            "email": { "type": "string", "description": "User's email address" }
        },
        "required": ["username", "email"]
    }))
}

/// Schema for `test_elicitation_sep1034_defaults`: one field of each primitive type, each with a
/// default value (SEP-1034).
pub fn defaults_schema() -> Result<ElicitationSchema, McpError> {
    parse(json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "description": "User name", "default": "John Doe" },
            "age": { "type": "integer", "description": "User age", "default": 30 },
            "score": { "type": "number", "description": "User score", "default": 95.5 },
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active"
            },
            "verified": { "type": "boolean", "description": "Verification status", "default": true }
        },
        "required": []
    }))
}

/// Schema for `test_elicitation_sep1330_enums`: the five enum shapes of SEP-1330.
pub fn enums_schema() -> Result<ElicitationSchema, McpError> {
    parse(json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Untitled single-select",
                "enum": ["option1", "option2", "option3"]
            },
            "titledSingle": {
                "type": "string",
                "description": "Titled single-select",
                "oneOf": [
                    { "const": "value1", "title": "First Option" },
                    { "const": "value2", "title": "Second Option" },
                    { "const": "value3", "title": "Third Option" }
                ]
            },
            "legacyEnum": {
                "type": "string",
                "description": "Legacy titled enum",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]
            },
            "untitledMulti": {
                "type": "array",
                "description": "Untitled multi-select",
                "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
            },
            "titledMulti": {
                "type": "array",
                "description": "Titled multi-select",
                "items": {
                    "anyOf": [
                        { "const": "value1", "title": "First Choice" },
                        { "const": "value2", "title": "Second Choice" },
                        { "const": "value3", "title": "Third Choice" }
                    ]
                }
            }
        },
        "required": []
    }))
}

fn parse(schema: Value) -> Result<ElicitationSchema, McpError> {
    let object: JsonObject = match schema {
        Value::Object(object) => object,
        _ => {
            return Err(McpError::internal_error("elicitation schema is not an object", None));
        }
    };
    ElicitationSchema::from_json_schema(object)
        .map_err(|error| McpError::internal_error(format!("bad elicitation schema: {error}"), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(schema: ElicitationSchema) -> Value {
        serde_json::to_value(schema).unwrap()
    }

    #[test]
    fn defaults_survive_the_typed_model() {
        let props = &wire(defaults_schema().unwrap())["properties"];
        assert_eq!(props["name"]["default"], "John Doe");
        assert_eq!(props["age"]["type"], "integer");
        assert_eq!(props["age"]["default"], 30);
        assert_eq!(props["score"]["default"], 95.5);
        assert_eq!(props["status"]["default"], "active");
        assert_eq!(props["status"]["enum"][0], "active");
        assert_eq!(props["verified"]["default"], true);
    }

    #[test]
    fn enum_shapes_survive_the_typed_model() {
        let props = &wire(enums_schema().unwrap())["properties"];
        assert!(props["untitledSingle"]["enum"].is_array());
        assert!(props["untitledSingle"].get("enumNames").is_none());
        assert!(props["titledSingle"]["oneOf"].is_array());
        assert!(props["titledSingle"].get("enum").is_none());
        assert_eq!(props["legacyEnum"]["enumNames"].as_array().unwrap().len(), 3);
        assert_eq!(props["untitledMulti"]["type"], "array");
        assert!(props["untitledMulti"]["items"]["enum"].is_array());
        assert_eq!(props["titledMulti"]["items"]["anyOf"][0]["title"], "First Choice");
        assert!(props["titledMulti"]["items"].get("enum").is_none());
    }

    #[test]
    fn user_info_schema_requires_both_fields() {
        let schema = wire(user_info_schema().unwrap());
        assert_eq!(schema["required"], json!(["username", "email"]));
    }
}
