//! Codes by voice call: the TwiML that Twilio speaks, written with quick-xml (every value escaped
//! by the writer, none concatenated into markup), and the `<Say language>` for a locale.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use crate::domain::Locale;

/// The languages that Twilio's `<Say>` speaks with its standard voices, as Twilio spells them
/// (twilio.com/docs/voice/twiml/say, "Supported languages"). A language alone picks its first
/// entry here (`pt` → `pt-BR`).
const SAY_LANGUAGES: &[&str] = &[
    "en-US", "en-GB", "en-AU", "en-CA", "en-IN", "ca-ES", "da-DK", "de-DE", "es-ES", "es-MX",
    "fi-FI", "fr-FR", "fr-CA", "it-IT", "ja-JP", "ko-KR", "nb-NO", "nl-NL", "pl-PL", "pt-BR",
    "pt-PT", "ru-RU", "sv-SE", "zh-CN", "zh-HK", "zh-TW",
];

/// `<Say language>` for `locale`: the exact tag if Twilio speaks it, else the first of its
/// language; `None` (Twilio's default voice, en-US) when Twilio has neither.
pub fn say_language(locale: Option<&Locale>) -> Option<&'static str> {
    let locale = locale?;
    let tag = locale.as_ref();
    SAY_LANGUAGES
        .iter()
        .find(|l| l.eq_ignore_ascii_case(tag))
        .or_else(|| {
            let language = locale.language();
            SAY_LANGUAGES
                .iter()
                .find(|l| l.split('-').next() == Some(language.as_str()))
        })
        .copied()
}

/// The call's TwiML: `text` (the template, with the digits spelled out one by one) said twice,
/// with a pause before the repeat, in `language`.
pub fn twiml(text: &str, language: Option<&str>) -> String {
    let mut writer = Writer::new(Vec::new());
    // Writing to a Vec cannot fail.
    let written = write_twiml(&mut writer, text, language);
    debug_assert!(written.is_ok());
    String::from_utf8(writer.into_inner()).unwrap_or_default()
}

fn write_twiml(
    writer: &mut Writer<Vec<u8>>,
    text: &str,
    language: Option<&str>,
) -> std::io::Result<()> {
    writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    writer.create_element("Response").write_inner_content(|w| {
        for repeat in 0..2 {
            if repeat > 0 {
                w.create_element("Pause")
                    .with_attribute(("length", "1"))
                    .write_empty()?;
            }
            let say = w.create_element("Say");
            let say = match language {
                Some(language) => say.with_attribute(("language", language)),
                None => say,
            };
            say.write_text_content(BytesText::new(text))?;
        }
        Ok(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_said_twice_and_escaped() {
        let xml = twiml("Code <1> & \"2\", 3", Some("pt-BR"));
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>\
             <Say language=\"pt-BR\">Code &lt;1&gt; &amp; &quot;2&quot;, 3</Say>\
             <Pause length=\"1\"/>\
             <Say language=\"pt-BR\">Code &lt;1&gt; &amp; &quot;2&quot;, 3</Say></Response>"
        );
        let plain = twiml("1, 2", None);
        assert!(
            plain.contains("<Say>1, 2</Say><Pause length=\"1\"/><Say>1, 2</Say>"),
            "{plain}"
        );
    }

    #[test]
    fn a_locale_picks_twilios_spelling_or_its_language() {
        let say = |tag: &str| say_language(Some(&Locale::parse(tag).unwrap()));
        assert_eq!(say("pt-br"), Some("pt-BR"));
        assert_eq!(say("pt"), Some("pt-BR"));
        assert_eq!(say("pt-PT"), Some("pt-PT"));
        assert_eq!(say("de-AT"), Some("de-DE"));
        assert_eq!(say("en-GB"), Some("en-GB"));
        assert_eq!(say("tlh"), None);
        assert_eq!(say_language(None), None);
    }
}
