use super::*;

fn tr(kind: CutKind, text: &str) -> Transcript {
    Transcript {
        session_id: "s".into(),
        segment_id: 7,
        kind,
        text: text.into(),
        start_ms: 0,
        end_ms: 1000,
        words: vec![],
        language: "en".into(),
    }
}

fn run(kind: CutKind, text: &str, hot: &[&str]) -> String {
    let hot: Vec<String> = hot.iter().map(|s| s.to_string()).collect();
    process_with(&TextConfig::default(), tr(kind, text), &hot).text
}

/// A Chinese final through the default settings.
fn zh(text: &str) -> String {
    zh_with(&TextConfig::default(), text)
}

fn zh_with(cfg: &TextConfig, text: &str) -> String {
    let mut t = tr(CutKind::Final, text);
    t.language = "zh".into();
    process_with(cfg, t, &[]).text
}

fn fin(text: &str) -> String {
    run(CutKind::Final, text, &[])
}

#[test]
fn sentence_casing() {
    assert_eq!(fin("hello there. how are you? fine! ok"), "Hello there. How are you? Fine! Ok.");
    assert_eq!(fin("  so i think i'm done  "), "So I think I'm done.");
    assert_eq!(fin("\"quoted.\" next"), "\"Quoted.\" Next.");
    // Existing capitals are kept.
    assert_eq!(fin("we met NASA in Paris"), "We met NASA in Paris.");
}

#[test]
fn final_period_only_for_finals() {
    assert_eq!(fin("done"), "Done.");
    assert_eq!(fin("really?"), "Really?");
    assert_eq!(fin("wait,"), "Wait.");
    assert_eq!(run(CutKind::Partial, "still talking", &[]), "Still talking");
    assert_eq!(fin(""), "");
    assert_eq!(fin("   "), "");
}

#[test]
fn numbers() {
    assert_eq!(fin("i have twenty five cats"), "I have 25 cats.");
    assert_eq!(fin("room one hundred and three"), "Room 103.");
    assert_eq!(fin("three thousand people came"), "3000 people came.");
    assert_eq!(fin("one of us"), "One of us.");
    assert_eq!(fin("give me a hundred"), "Give me a hundred.");
    let cfg = TextConfig { normalize_numbers: false, itn: false, ..TextConfig::default() };
    assert_eq!(process_with(&cfg, tr(CutKind::Final, "twenty five"), &[]).text, "Twenty five.");
    // The grammar (ITN) alone writes it too.
    let cfg = TextConfig { normalize_numbers: false, ..TextConfig::default() };
    assert_eq!(process_with(&cfg, tr(CutKind::Final, "twenty five"), &[]).text, "25.");
}

#[test]
fn hotwords() {
    assert_eq!(run(CutKind::Final, "deploy it on kuber netis", &["Kubernetes"]), "Deploy it on Kubernetes.");
    assert_eq!(run(CutKind::Final, "ask kiky about it", &["Kiki"]), "Ask Kiki about it.");
    assert_eq!(run(CutKind::Final, "we use post gres, mostly", &["Postgres"]), "We use Postgres, mostly.");
    assert_eq!(run(CutKind::Final, "my iphone broke", &["iPhone"]), "My iPhone broke.");
    // Sentence start does not recase a hotword's spelling.
    assert_eq!(run(CutKind::Final, "iphone sales", &["iPhone"]), "iPhone sales.");
    // Multi-word hotword, case-insensitive exact and near matches.
    assert_eq!(run(CutKind::Final, "flying to new yorke", &["New York"]), "Flying to New York.");
    // Too far: no change.
    assert_eq!(run(CutKind::Final, "a kettle", &["Kiki"]), "A kettle.");
    // Short hotwords need an exact (case-insensitive) match.
    assert_eq!(run(CutKind::Final, "the ice is cold", &["ICE", "Tim"]), "The ICE is cold.");
    assert_eq!(run(CutKind::Final, "it is time", &["Tim"]), "It is time.");
}

#[test]
fn edit_distance_basics() {
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("same", "same"), 0);
}

#[test]
fn profanity() {
    assert_eq!(fin("what the fuck is this shit"), "What the f*** is this s***.");
    assert_eq!(fin("Fucking hell"), "F****** hell.");
    assert_eq!(fin("charles dickens wrote it"), "Charles dickens wrote it.");
    let cfg = TextConfig::from_config(&Config::from_pairs(&[("mask_profanity", "false")])).unwrap();
    assert_eq!(process_with(&cfg, tr(CutKind::Final, "oh shit"), &[]).text, "Oh shit.");
    assert!(matches!(
        TextConfig::from_config(&Config::from_pairs(&[("mask_profanity", "sometimes")])),
        Err(PluginError::InvalidConfig(_))
    ));
}

fn w(text: &str, start: u64, end: u64, p: f32) -> Word {
    Word { text: text.into(), start_ms: start, end_ms: end, probability: p }
}

#[test]
fn words_follow_the_text_when_aligned() {
    let mut t = tr(CutKind::Final, "i saw twenty five shit birds");
    t.words = vec![
        w(" i", 0, 100, 0.9),
        w(" saw", 100, 200, 0.9),
        w(" twenty", 200, 300, 0.8),
        w(" five", 300, 400, 0.7),
        w(" shit", 400, 500, 0.9),
        w(" birds", 500, 600, 0.95),
    ];
    let out = process_with(&TextConfig::default(), t, &[]);
    assert_eq!(out.text, "I saw 25 s*** birds.");
    assert_eq!(
        out.words,
        vec![
            w(" I", 0, 100, 0.9),
            w(" saw", 100, 200, 0.9),
            w(" 25", 200, 400, 0.7),
            w(" s***", 400, 500, 0.9),
            w(" birds.", 500, 600, 0.95),
        ]
    );
    assert_eq!(out.segment_id, 7);
    assert_eq!(out.kind, CutKind::Final);
}

#[test]
fn words_untouched_when_not_aligned() {
    let mut t = tr(CutKind::Final, "twenty five birds");
    t.words = vec![w("twenty", 0, 1, 1.0), w("five birds", 1, 2, 1.0)];
    let before = t.words.clone();
    let out = process_with(&TextConfig::default(), t, &[]);
    assert_eq!(out.text, "25 birds.");
    assert_eq!(out.words, before);
}

#[test]
fn plugin_entry_point_reads_session_options() {
    let opts = SessionOptions {
        session_id: "s".into(),
        language: None,
        hotwords: vec!["Kiki".into()],
        room: None,
        extra: vec![("mask_profanity".into(), "no".into())],
    };
    let out = TextPostprocessor::process(tr(CutKind::Final, "kiky says shit"), &opts).unwrap();
    assert_eq!(out.text, "Kiki says shit.");
    let bad = SessionOptions { extra: vec![("normalize_numbers".into(), "2".into())], ..opts };
    assert!(TextPostprocessor::process(tr(CutKind::Final, "x"), &bad).is_err());
}

#[test]
fn chinese_finals_read_with_full_width_punctuation() {
    assert_eq!(zh("你好,世界"), "你好，世界。");
    assert_eq!(zh("今天天气很好。"), "今天天气很好。");
    assert_eq!(zh("你吃饭了吗?"), "你吃饭了吗？");
    assert_eq!(zh("我用 Python, 很好用"), "我用 Python，很好用。");
    let off = TextConfig { cjk_punctuation: false, ..TextConfig::default() };
    assert_eq!(process_with(&off, tr(CutKind::Final, "你好,世界"), &[]).text, "你好,世界.");
    // English is untouched by it.
    assert_eq!(fin("hello, world"), "Hello, world.");
}

#[test]
fn spoken_forms_are_written_in_chinese_and_english() {
    assert_eq!(
        zh("今天是二零二六年十二月八日,下午三点五十分,我们一共有三百五十个人参加了会议."),
        "今天是2026/12/08，3:50p.m.，我们一共有350个人参加了会议。"
    );
    assert_eq!(zh("百分之二十五的人同意"), "25%的人同意。");
    assert_eq!(zh("我有两个苹果"), "我有两个苹果。");
    // Abbreviations the grammar writes do not start a sentence.
    assert_eq!(
        fin("We met on the fifth of May at ten thirty a m and paid twenty five dollars each"),
        "We met on the fifth of May at 10:30 a.m. and paid $25 each."
    );
    // Off per session: the spoken form stays.
    let off = TextConfig { itn: false, ..TextConfig::default() };
    assert_eq!(zh_with(&off, "百分之二十五的人同意"), "百分之二十五的人同意。");
    // A language without a grammar is left alone.
    let mut t = tr(CutKind::Final, "dos mil veinte");
    t.language = "es".into();
    assert_eq!(process_with(&TextConfig::default(), t, &[]).text, "Dos mil veinte.");
}

#[test]
fn abbreviations_do_not_start_sentences() {
    assert_eq!(fin("at 10:30 a.m. we left. then it rained"), "At 10:30 a.m. we left. Then it rained.");
    assert_eq!(fin("it was 3.5. then more"), "It was 3.5. Then more.");
}
