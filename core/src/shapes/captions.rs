//! Captions: MosaicFusion's single-object template with and without the colour ("a photo of a
//! single red star", "a photo of a single star"), and scene captions ("a red star and a blue
//! ring").

/// MosaicFusion's prompt template for a category without a definition.
pub const SINGLE_TEMPLATE: &str = "a photo of a single {name}";

/// "a photo of a single {colour} {name}", or without the colour.
pub fn single_caption(name: &str, color: Option<&str>) -> String {
    let name = match color {
        Some(color) => format!("{color} {name}"),
        None => name.to_string(),
    };
    SINGLE_TEMPLATE.replace("{name}", &name)
}

/// "a {colour} {name}", with "an" before a vowel.
fn with_article(color: &str, name: &str) -> String {
    let article = if color.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {color} {name}")
}

/// The objects `(colour, name)` in order: "a red star", "a red star and a blue ring",
/// "a red star, an orange cross and a blue ring".
pub fn scene_caption(objects: &[(&str, &str)]) -> String {
    let phrases: Vec<String> = objects
        .iter()
        .map(|(color, name)| with_article(color, name))
        .collect();
    match phrases.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions() {
        assert_eq!(
            single_caption("star", Some("red")),
            "a photo of a single red star"
        );
        assert_eq!(single_caption("star", None), "a photo of a single star");
        assert_eq!(scene_caption(&[("red", "star")]), "a red star");
        assert_eq!(
            scene_caption(&[("red", "star"), ("blue", "ring")]),
            "a red star and a blue ring"
        );
        assert_eq!(
            scene_caption(&[("red", "star"), ("orange", "cross"), ("blue", "ring")]),
            "a red star, an orange cross and a blue ring"
        );
        assert_eq!(scene_caption(&[]), "");
    }
}
