//! The language of a product title, for listings whose seller did not declare one.
//!
//! Detection is whatlang's (trigrams and scripts, 69 languages, no data files);
//! this module only maps its ISO 639-3 codes onto the two-letter ISO 639-1 codes the
//! `language` column uses, and refuses guesses too weak to be worth a column value.

use polars::prelude::*;

/// Below this whatlang confidence a Latin-script title's language stays unknown
/// (null): short titles ("Yoga mat 6mm") are often ambiguous between languages. Other
/// scripts mostly name their language (Hangul, kana, Hebrew, Greek, Thai) and keep
/// whatlang's best guess.
pub const MIN_CONFIDENCE: f64 = 0.2;

/// ISO 639-1 for whatlang's ISO 639-3 codes (whatlang has no 639-1 table).
const ISO639_1: &[(&str, &str)] = &[
    ("afr", "af"),
    ("aka", "ak"),
    ("amh", "am"),
    ("ara", "ar"),
    ("aze", "az"),
    ("bel", "be"),
    ("ben", "bn"),
    ("bul", "bg"),
    ("cat", "ca"),
    ("ces", "cs"),
    ("cmn", "zh"),
    ("cym", "cy"),
    ("dan", "da"),
    ("deu", "de"),
    ("ell", "el"),
    ("eng", "en"),
    ("epo", "eo"),
    ("est", "et"),
    ("fin", "fi"),
    ("fra", "fr"),
    ("guj", "gu"),
    ("heb", "he"),
    ("hin", "hi"),
    ("hrv", "hr"),
    ("hun", "hu"),
    ("hye", "hy"),
    ("ind", "id"),
    ("ita", "it"),
    ("jav", "jv"),
    ("jpn", "ja"),
    ("kan", "kn"),
    ("kat", "ka"),
    ("khm", "km"),
    ("kor", "ko"),
    ("lat", "la"),
    ("lav", "lv"),
    ("lit", "lt"),
    ("mal", "ml"),
    ("mar", "mr"),
    ("mkd", "mk"),
    ("mya", "my"),
    ("nep", "ne"),
    ("nld", "nl"),
    ("nob", "nb"),
    ("ori", "or"),
    ("pan", "pa"),
    ("pes", "fa"),
    ("pol", "pl"),
    ("por", "pt"),
    ("ron", "ro"),
    ("rus", "ru"),
    ("sin", "si"),
    ("slk", "sk"),
    ("slv", "sl"),
    ("sna", "sn"),
    ("spa", "es"),
    ("srp", "sr"),
    ("swe", "sv"),
    ("tam", "ta"),
    ("tel", "te"),
    ("tgl", "tl"),
    ("tha", "th"),
    ("tuk", "tk"),
    ("tur", "tr"),
    ("ukr", "uk"),
    ("urd", "ur"),
    ("uzb", "uz"),
    ("vie", "vi"),
    ("yid", "yi"),
    ("zul", "zu"),
];

/// The title's language as ISO 639-1, or None when unsure.
pub fn detect(title: &str) -> Option<&'static str> {
    let info = whatlang::detect(title)?;
    if info.script() == whatlang::Script::Latin && info.confidence() < MIN_CONFIDENCE {
        return None;
    }
    let code = info.lang().code();
    ISO639_1
        .iter()
        .find(|(three, _)| *three == code)
        .map(|(_, two)| *two)
}

/// Fills the null `language` values of a products frame from its titles; a declared
/// language is kept. Returns how many were filled.
pub fn fill(products: &mut DataFrame) -> PolarsResult<usize> {
    let titles = products.column("title")?.str()?.clone();
    let declared = products.column("language")?.str()?.clone();
    let mut filled = 0;
    let values: StringChunked = declared
        .iter()
        .zip(titles.iter())
        .map(|(lang, title)| match lang {
            Some(l) => Some(l.to_string()),
            None => {
                let d = title.and_then(detect);
                filled += d.is_some() as usize;
                d.map(str::to_string)
            }
        })
        .collect();
    products.with_column(values.with_name("language".into()).into_column())?;
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_in_several_scripts() {
        let cases = [
            (
                "Wireless noise cancelling headphones with microphone, black",
                "en",
            ),
            ("Chaussures de randonnée imperméables pour femme", "fr"),
            (
                "Kabellose Kopfhörer mit Geräuschunterdrückung für das Büro",
                "de",
            ),
            ("Zapatillas de deporte para hombre, muy cómodas", "es"),
            ("Беспроводные наушники с микрофоном, чёрные", "ru"),
            ("ワイヤレスイヤホン ノイズキャンセリング", "ja"),
            ("무선 블루투스 이어폰 화이트", "ko"),
            ("سماعات لاسلكية بلوتوث مع ميكروفون", "ar"),
            ("כיסוי סיליקון לטלפון נייד, שקוף", "he"),
        ];
        for (title, want) in cases {
            assert_eq!(detect(title), Some(want), "{title}");
        }
    }

    #[test]
    fn nothing_to_detect_gives_none() {
        assert_eq!(detect(""), None);
        assert_eq!(detect("1234 5678"), None);
        assert_eq!(detect("🎧🔥"), None);
    }

    #[test]
    fn fill_keeps_declared_languages() {
        let mut df = df!(
            "title" => [Some("Беспроводные наушники с микрофоном"), Some("Wireless headphones with a microphone"), None],
            "language" => [None, Some("de"), None::<&str>],
        )
        .unwrap();
        assert_eq!(fill(&mut df).unwrap(), 1);
        let got: Vec<Option<&str>> = df
            .column("language")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(got, [Some("ru"), Some("de"), None]);
    }
}
