//! The fixture prompts (simple, with arguments, with an embedded resource, with an image) and
//! the argument completion behind `completion/complete`.

use rmcp::ErrorData as McpError;
use rmcp::model::{
    CompletionInfo, ContentBlock, GetPromptResult, JsonObject, Prompt, PromptArgument, PromptMessage, Reference,
    ResourceContents, Role,
};
use serde_json::{Value, json};

use super::{fixtures, resources};

/// Prompt without arguments.
pub const SIMPLE: &str = "test_simple_prompt";
/// Prompt with two required arguments, `arg1` and `arg2`.
pub const WITH_ARGUMENTS: &str = "test_prompt_with_arguments";
/// Prompt embedding the resource named by its `resourceUri` argument.
pub const WITH_EMBEDDED_RESOURCE: &str = "test_prompt_with_embedded_resource";
/// Prompt carrying an image.
pub const WITH_IMAGE: &str = "test_prompt_with_image";

/// Values offered when completing a prompt argument.
const ARGUMENT_CANDIDATES: &[&str] = &["paris", "park", "party", "test", "testing", "tested"];
/// Values offered when completing the template's `{id}`.
const TEMPLATE_ID_CANDIDATES: &[&str] = &["1", "12", "123", "42"];

/// The prompts `prompts/list` returns.
pub fn list() -> Vec<Prompt> {
    vec![
        Prompt::new(SIMPLE, Some("A simple prompt without arguments"), None),
        Prompt::new(
            WITH_ARGUMENTS,
            Some("A prompt with two required arguments"),
            Some(vec![
                PromptArgument::new("arg1").with_description("First test argument").with_required(true),
                PromptArgument::new("arg2").with_description("Second test argument").with_required(true),
            ]),
        ),
        Prompt::new(
            WITH_EMBEDDED_RESOURCE,
            Some("A prompt that embeds a resource"),
            Some(vec![
                PromptArgument::new("resourceUri").with_description("URI of the resource to embed").with_required(true),
            ]),
        ),
        Prompt::new(WITH_IMAGE, Some("A prompt that carries an image"), None),
    ]
}

/// Renders prompt `name` with `arguments`.
pub fn get(name: &str, arguments: Option<&JsonObject>) -> Result<GetPromptResult, McpError> {
    let messages = match name {
        SIMPLE => vec![PromptMessage::new_text(Role::User, "This is a simple prompt for testing.")],
        WITH_ARGUMENTS => {
            let arg1 = required_argument(arguments, "arg1")?;
            let arg2 = required_argument(arguments, "arg2")?;
            vec![PromptMessage::new_text(Role::User, format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))]
        }
        WITH_EMBEDDED_RESOURCE => {
            let uri = required_argument(arguments, "resourceUri")?;
            let embedded =
                ResourceContents::text("Embedded resource content for testing.", uri).with_mime_type("text/plain");
            vec![
                PromptMessage::new(Role::User, ContentBlock::resource(embedded)),
                PromptMessage::new_text(Role::User, "Please process the embedded resource above."),
            ]
        }
        WITH_IMAGE => vec![
            PromptMessage::new(Role::User, ContentBlock::image(fixtures::RED_PIXEL_PNG_BASE64, fixtures::PNG_MIME)),
            PromptMessage::new_text(Role::User, "Please analyze the image above."),
        ],
        _ => {
            return Err(McpError::invalid_params(format!("unknown prompt: {name}"), Some(json!({ "name": name }))));
        }
    };
    Ok(GetPromptResult::new(messages))
}

/// Completion values for the argument `argument_name` starting with `prefix`.
pub fn complete(reference: &Reference, argument_name: &str, prefix: &str) -> Result<CompletionInfo, McpError> {
    let candidates: &[&str] = match reference {
        Reference::Prompt(prompt) => match (prompt.name.as_str(), argument_name) {
            (WITH_ARGUMENTS, "arg1" | "arg2") => ARGUMENT_CANDIDATES,
            (WITH_EMBEDDED_RESOURCE, "resourceUri") => {
                &[resources::STATIC_TEXT_URI, resources::STATIC_BINARY_URI, resources::WATCHED_URI]
            }
            _ => &[],
        },
        Reference::Resource(template) if template.uri == resources::TEMPLATE_URI && argument_name == "id" => {
            TEMPLATE_ID_CANDIDATES
        }
        _ => &[],
    };
    let values: Vec<String> =
        candidates.iter().filter(|value| value.starts_with(prefix)).map(|value| (*value).to_owned()).collect();
    let total = u32::try_from(values.len()).unwrap_or(u32::MAX);
    let mut info = CompletionInfo::new(values).map_err(|error| McpError::internal_error(error, None))?;
    info.total = Some(total);
    info.has_more = Some(false);
    Ok(info)
}

fn required_argument<'a>(arguments: Option<&'a JsonObject>, name: &str) -> Result<&'a str, McpError> {
    match arguments.and_then(|arguments| arguments.get(name)) {
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(McpError::invalid_params(format!("argument {name} must be a string"), None)),
        None => Err(McpError::invalid_params(format!("missing required argument: {name}"), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::PromptReference;

    #[test]
    fn arguments_are_substituted() {
        let arguments = json!({ "arg1": "hello", "arg2": "world" });
        let result = get(WITH_ARGUMENTS, arguments.as_object()).unwrap();
        let wire = serde_json::to_string(&result.messages).unwrap();
        assert!(wire.contains("arg1='hello', arg2='world'"), "{wire}");
    }

    #[test]
    fn missing_argument_is_invalid_params() {
        let error = get(WITH_ARGUMENTS, None).unwrap_err();
        assert_eq!(error.code.0, -32602);
    }

    #[test]
    fn completion_filters_by_prefix() {
        let reference = Reference::Prompt(PromptReference::new(WITH_ARGUMENTS));
        let info = complete(&reference, "arg1", "par").unwrap();
        assert_eq!(info.values, vec!["paris", "park", "party"]);
        let none = complete(&reference, "other", "par").unwrap();
        assert!(none.values.is_empty());
    }
}
