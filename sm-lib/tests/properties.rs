//! Property tests for what turns untrusted input into decisions: the message sanitiser, the
//! session-name and reference parsers, the configuration loader, and the engine's handling of
//! hook payloads (any JSON an agent's hook can send).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;
use sm_lib::engine::{FakeProfile, HookEvent, sanitize_message};
use sm_lib::{
    AgentKind, Caller, DeliveryMode, Engine, MemoryBackend, MemoryStore, SessionName, SpawnRequest,
};

/// Text heavy in what terminals treat specially.
fn nasty_text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        "[a-z ]{0,8}",
        Just("\u{1b}".to_string()),
        Just("\u{1b}[".to_string()),
        Just("\u{1b}]0;".to_string()),
        Just("\u{1b}\\".to_string()),
        Just("\u{7}".to_string()),
        Just("\u{9b}".to_string()),
        Just("\u{9d}".to_string()),
        Just("\r".to_string()),
        Just("\n".to_string()),
        Just("\t".to_string()),
        Just("\u{0}".to_string()),
        Just("\u{202e}".to_string()),
        Just("\u{200d}".to_string()),
        any::<char>().prop_map(String::from),
        "[0-9;?]{0,4}[A-Za-z~]",
    ];
    proptest::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn sanitised_text_has_no_controls_and_is_stable(text in nasty_text()) {
        if let Ok(clean) = sanitize_message(&text, 1 << 20) {
            prop_assert!(!clean.trim().is_empty());
            prop_assert!(
                !clean.chars().any(|c| c.is_control() && c != '\n' && c != '\t'),
                "control character left in {clean:?}"
            );
            prop_assert!(!clean.contains('\u{202e}'), "bidi override left");
            prop_assert_eq!(clean.trim_end(), clean.as_str());
            // Cleaning twice changes nothing.
            prop_assert_eq!(sanitize_message(&clean, 1 << 20).unwrap(), clean);
        }
    }

    #[test]
    fn ordinary_text_passes_unchanged(text in "[A-Za-z0-9 ,.;:!?'\"$`(){}\\[\\]<>|&*#%@~^=+_/\\\\-]{1,200}") {
        prop_assume!(!text.trim().is_empty());
        prop_assert_eq!(sanitize_message(&text, 1 << 20).unwrap(), text.trim_end());
    }

    #[test]
    fn the_size_limit_holds(text in ".{0,300}", limit in 1usize..200) {
        if let Ok(clean) = sanitize_message(&text, limit) {
            prop_assert!(clean.len() <= limit);
        }
    }

    #[test]
    fn a_valid_name_is_safe_anywhere(name in any::<String>()) {
        if let Ok(parsed) = name.parse::<SessionName>() {
            prop_assert_eq!(parsed.as_str(), name.as_str());
            prop_assert!(parsed
                .as_str()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
            prop_assert!(!parsed.as_str().starts_with(['-', '.']));
        }
    }

    #[test]
    fn configuration_text_never_panics(text in "(\\PC|\n|  |: |- ){0,200}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, &text).unwrap();
        let _ = sm_lib::Config::load(Some(&path));
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("Write"),
            Just("Task"),
            Just("Bash"),
            Just("/etc/passwd"),
            Just("../../x")
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("tool_name".to_string()),
                    Just("tool_input".to_string()),
                    Just("file_path".to_string()),
                    Just("transcript_path".to_string()),
                    Just("last_assistant_message".to_string()),
                    Just("message".to_string()),
                    Just("notification_type".to_string()),
                    Just("agent_id".to_string()),
                    Just("agent_type".to_string()),
                    Just("prompt".to_string()),
                    Just("reason".to_string()),
                    Just("source".to_string()),
                    "[a-z_]{1,12}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn hook_event() -> impl Strategy<Value = HookEvent> {
    let event = prop_oneof![
        Just("Stop"),
        Just("UserPromptSubmit"),
        Just("Notification"),
        Just("PostToolUse"),
        Just("PreToolUse"),
        Just("SessionStart"),
        Just("SessionEnd"),
        Just("SubagentStart"),
        Just("SubagentStop"),
        Just("NoSuchEvent"),
    ]
    .prop_map(str::to_string);
    (event, json_value()).prop_map(|(event, payload)| HookEvent { event, payload })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever an agent's hooks send, the engine stays up and keeps delivering.
    #[test]
    fn any_hook_payload_leaves_the_engine_working(events in proptest::collection::vec(hook_event(), 1..12)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let backend = MemoryBackend::new();
            let store = Arc::new(MemoryStore::new());
            let engine = Engine::builder(store.clone(), Arc::new(backend.clone()))
                .profile(Arc::new(FakeProfile { program: PathBuf::from("simulated"), env: Default::default() }))
                .start()
                .await
                .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let session = engine
                .spawn(&Caller::Admin, SpawnRequest::new(AgentKind::Fake, dir.path()))
                .await
                .unwrap();
            for e in events {
                let _ = engine.hook(&session.id, e).await;
            }
            // Still answering, still accepting messages, still able to kill.
            engine.resolve(session.id.as_str()).await.unwrap();
            engine
                .send(&Caller::Admin, &session.id, "still there?", DeliveryMode::Sequential)
                .await
                .unwrap();
            engine.kill(&Caller::Admin, &session.id).await.unwrap();
        });
    }
}
