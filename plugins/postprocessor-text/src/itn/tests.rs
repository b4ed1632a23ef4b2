use super::{Lang, normalize};

/// The grammar's own test cases (`spoken => written`, from the wetextprocessing wheel), for the
/// configuration the shipped graphs were built with. Other files in that set test options the
/// graphs do not have (filler removal, `enable_0_to_9`, standalone numbers off).
fn cases(lang: &str) -> Vec<(String, Vec<(String, String)>)> {
    let dir = std::path::Path::new(env!("KIKI_ITN_DIR")).join("cases").join(lang);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make setup`)", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with("normalizer") || name == "normalizer_enable_standalone_number_disable_0_to_9.txt"
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a test file");
            let pairs = text
                .lines()
                .filter_map(|l| l.split_once("=>"))
                .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
                .collect();
            (path.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string(), pairs)
        })
        .collect()
}

/// Prints an accuracy table per file and returns (right, total).
fn score(lang: Lang, dir: &str) -> (usize, usize) {
    let (mut right, mut total) = (0, 0);
    println!("{:<60} {:>5} {:>5}", format!("ITN {dir}: file"), "right", "cases");
    for (file, pairs) in cases(dir) {
        let ok = pairs
            .iter()
            .filter(|(spoken, written)| {
                let got = normalize(spoken, lang).expect("normalises");
                if &got != written {
                    println!("  miss: {spoken} => {written} (got {got})");
                }
                &got == written
            })
            .count();
        println!("{file:<60} {ok:>5} {:>5}", pairs.len());
        right += ok;
        total += pairs.len();
    }
    println!("{:<60} {right:>5} {total:>5}", "total");
    (right, total)
}

// The floors are what wetext 0.1.8 itself (Python, kaldifst) scores on the same files with the
// same graphs: Chinese 197 of 206 (five measure and four number cases expect other options),
// English 487 of 487.
#[test]
fn chinese_cases_score_as_wetext_does() {
    let (right, total) = score(Lang::Zh, "zh");
    assert_eq!(total, 206, "the case set changed");
    assert!(right >= 197, "{right} of {total}");
}

#[test]
fn english_cases_score_as_wetext_does() {
    let (right, total) = score(Lang::En, "en");
    assert_eq!(total, 487, "the case set changed");
    assert!(right >= 487, "{right} of {total}");
}

#[test]
fn sentences_as_a_recogniser_writes_them() {
    let zh = |s| normalize(s, Lang::Zh).expect("normalises");
    assert_eq!(zh("今天是二零二六年十二月八日，下午三点五十分。"), "今天是2026/12/08，3:50p.m.。");
    assert_eq!(zh("百分之二十五的人，"), "25%的人，");
    assert_eq!(zh("他花了三百五十块钱"), "他花了350块钱");
    assert_eq!(zh("负三点一四"), "-3.14");
    // A lone small number stays a word.
    assert_eq!(zh("我有两个苹果"), "我有两个苹果");
    assert_eq!(zh("甚至出现交易几乎停滞的情况"), "甚至出现交易几乎停滞的情况");
    // Equal-weight paths: wetext's choice (the digits' grouping) is kept.
    assert_eq!(zh("零幺三八零零一三八零零零"), "01380 013 8000");
    // Quotes and backslashes come through once (wetext escapes them twice).
    assert_eq!(zh("A\"B\\C 一百"), "A\"B\\C 100");
    assert_eq!(zh(""), "");
    let en = |s| normalize(s, Lang::En).expect("normalises");
    assert_eq!(en("I paid twenty five dollars."), "I paid $25 .");
    assert_eq!(en("One of them said no."), "One of them said no.");
}

#[test]
fn long_text_is_normalised_a_sentence_at_a_time() {
    let sentence = "他花了三百五十块钱。";
    let text = sentence.repeat(60);
    let out = normalize(&text, Lang::Zh).expect("normalises");
    assert_eq!(out, "他花了350块钱。".repeat(60));
}

#[test]
fn long_text_without_marks_is_cut_between_numbers() {
    let text = "他花了三百五十块钱".repeat(150);
    let out = normalize(&text, Lang::Zh).expect("normalises");
    assert_eq!(out, "他花了350块钱".repeat(150));
}

#[test]
fn language_codes() {
    assert_eq!(Lang::for_code("zh"), Some(Lang::Zh));
    assert_eq!(Lang::for_code("EN"), Some(Lang::En));
    assert_eq!(Lang::for_code("ja"), None);
    assert_eq!(Lang::for_code(""), None);
}
