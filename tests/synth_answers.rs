//! The answer store: request keys depend on every part of a request, answers
//! survive reopening, a write cut short by a crash is cut off and counted,
//! and a foreign line is an error naming it.

use std::io::Write;

use gcse::synth::answers::{request_key, Answer, AnswerStore, Sampling};

fn sampling() -> Sampling {
    Sampling {
        temperature: 0.7,
        top_p: 0.9,
        max_tokens: 64,
        seed: Some(1),
        stop: vec!["\n".into()],
    }
}

fn answer(text: &str) -> Answer {
    Answer {
        text: text.into(),
        prompt_tokens: Some(12),
        completion_tokens: Some(5),
    }
}

fn temp_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gcse-answers-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("answers.jsonl")
}

#[test]
fn keys_change_with_every_part_of_the_request() {
    let s = sampling();
    let key = request_key("gemma", "Sentence: a", &s);
    assert_eq!(key.len(), 32);
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(key, request_key("gemma", "Sentence: a", &s));
    let variants = [
        request_key("gemma-2", "Sentence: a", &s),
        request_key("gemma", "Sentence: b", &s),
        request_key(
            "gemma",
            "Sentence: a",
            &Sampling {
                temperature: 0.8,
                ..s.clone()
            },
        ),
        request_key(
            "gemma",
            "Sentence: a",
            &Sampling {
                top_p: 1.0,
                ..s.clone()
            },
        ),
        request_key(
            "gemma",
            "Sentence: a",
            &Sampling {
                max_tokens: 65,
                ..s.clone()
            },
        ),
        request_key(
            "gemma",
            "Sentence: a",
            &Sampling {
                seed: None,
                ..s.clone()
            },
        ),
        request_key(
            "gemma",
            "Sentence: a",
            &Sampling {
                stop: vec!["\n".into(), "\n".into()],
                ..s.clone()
            },
        ),
        // The same bytes split differently between model and prompt, and
        // between stop strings.
        request_key("gemm", "aSentence: a", &s),
        request_key(
            "gemma",
            "Sentence: a",
            &Sampling {
                stop: vec!["\n\n".into()],
                ..s.clone()
            },
        ),
    ];
    for (i, v) in variants.iter().enumerate() {
        assert_ne!(*v, key, "variant {i}");
    }
}

#[test]
fn answers_survive_reopening_and_a_cut_write_is_dropped() {
    let path = temp_file("reopen");
    let s = sampling();
    {
        let mut store = AnswerStore::open(&path).unwrap();
        assert!(store.is_empty());
        for (i, text) in ["{\"text\": \"one\"}", "deux", "drei – ü"]
            .iter()
            .enumerate()
        {
            let key = request_key("m", &format!("prompt {i}"), &s);
            store.insert(&key, "m", &s, answer(text)).unwrap();
        }
        assert_eq!(store.len(), 3);
    }
    let whole = std::fs::metadata(&path).unwrap().len();

    // A crash in the middle of the fourth record, inside the two-byte "ü".
    let record = format!(
        "{{\"key\":\"{}\",\"model\":\"m\",\"sampling\":{},\"answer\":{{\"text\":\"vier ü\"}}}}\n",
        request_key("m", "prompt 3", &s),
        serde_json::to_string(&s).unwrap()
    );
    let cut = record.find('ü').unwrap() + 1;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&record.as_bytes()[..cut])
        .unwrap();

    let mut store = AnswerStore::open(&path).unwrap();
    assert_eq!(store.torn_lines(), 1);
    assert_eq!(store.len(), 3);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
    let third = store.get(&request_key("m", "prompt 2", &s)).unwrap();
    assert_eq!(third, &answer("drei – ü"));
    assert!(store.get(&request_key("m", "prompt 3", &s)).is_none());

    store
        .insert(&request_key("m", "prompt 3", &s), "m", &s, answer("vier ü"))
        .unwrap();
    drop(store);
    let store = AnswerStore::open(&path).unwrap();
    assert_eq!((store.len(), store.torn_lines()), (4, 0));
    assert_eq!(
        store.get(&request_key("m", "prompt 3", &s)).unwrap().text,
        "vier ü"
    );
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn a_foreign_line_is_an_error_naming_it() {
    let path = temp_file("foreign");
    let s = sampling();
    {
        let mut store = AnswerStore::open(&path).unwrap();
        store
            .insert(&request_key("m", "p", &s), "m", &s, answer("a"))
            .unwrap();
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(b"not json\n").unwrap();
    file.write_all(b"{}\n").unwrap();
    let err = AnswerStore::open(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}:2: not an answer record", path.display())),
        "{err}"
    );
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}
