//! The published JSON Schema (`docs/change-request.v1.schema.json`) and tollgate's own
//! validator must agree: every fixture passes both, and each bad-input case is refused by
//! both, so a pipeline author can rely on the schema.

mod common;

use common::fixture_json;
use serde_json::{Value, json};
use tollgate::domain::change_request::from_value;

fn schema() -> jsonschema::Validator {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/change-request.v1.schema.json");
    let text = std::fs::read_to_string(&path).expect("schema file");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
}

type Mutation = fn(&mut Value);

fn cases_refused() -> Vec<(&'static str, Mutation)> {
    vec![
        ("missing title", |v| {
            v.as_object_mut().unwrap().remove("title");
        }),
        ("unknown gate", |v| v["gate"] = json!("release")),
        ("wrong schema", |v| {
            v["schema"] = json!("tollgate/change-request/v2")
        }),
        ("id with a slash", |v| v["id"] = json!("CR/1")),
        ("id with an escape", |v| v["id"] = json!("CR-\u{1b}1")),
        ("id too long", |v| v["id"] = json!("C".repeat(65))),
        ("metric as string", |v| {
            v["metrics"][0]["baseline"] = json!("0.9")
        }),
        ("metric direction", |v| {
            v["metrics"][0]["better"] = json!("up")
        }),
        ("environment", |v| {
            v["subject"]["environment"] = json!("production")
        }),
        ("check status", |v| {
            v["checks"][0]["status"] = json!("passed")
        }),
        ("title too long", |v| v["title"] = json!("t".repeat(201))),
        ("blank summary", |v| v["summary"] = json!("   ")),
        ("file url", |v| {
            v["artifacts"][0]["url"] = json!("file:///etc/passwd")
        }),
        ("rollback_tested as string", |v| {
            v["plan"]["rollback_tested"] = json!("yes")
        }),
        ("seed as float", |v| v["versions"]["seed"] = json!(1.5)),
        ("bad timestamp", |v| v["created_at"] = json!("yesterday")),
        ("declared risk", |v| {
            v["risk"]["declared"] = json!("critical")
        }),
        ("too many metrics", |v| {
            let m = v["metrics"][0].clone();
            v["metrics"] = Value::Array(vec![m; 201]);
        }),
        ("artifact digest not sha256", |v| {
            v["subject"]["artifact_digest"] = json!("md5:d41d8cd98f00b204e9800998ecf8427e")
        }),
        ("artifact digest in upper case", |v| {
            v["subject"]["artifact_digest"] = json!(format!("sha256:{}", "A".repeat(64)))
        }),
        ("policy gate without its policy", |v| {
            v["gate"] = json!("policy")
        }),
        ("policy with a bad base digest", |v| {
            v["gate"] = json!("policy");
            v["policy"] = json!({"text": "version = 1", "base_digest": "md5:abc"});
        }),
        ("policy with an unknown field", |v| {
            v["gate"] = json!("policy");
            v["policy"] = json!({"text": "version = 1", "base_digest": format!("sha256:{}", "a".repeat(64)), "by": "me"});
        }),
    ]
}

fn cases_accepted() -> Vec<(&'static str, Mutation)> {
    vec![
        ("an artifact digest", |v| {
            v["subject"]["artifact_digest"] = json!(format!("sha256:{}", "ab".repeat(32)))
        }),
        ("unknown top-level field", |v| {
            v["x_team"] = json!({"slack": "#ml"})
        }),
        ("first release", |v| {
            v["subject"].as_object_mut().unwrap().remove("from_version");
        }),
        ("no seed", |v| v["versions"]["seed"] = Value::Null),
        ("check with value and url", |v| {
            v["checks"][0]["value"] = json!(41.5);
            v["checks"][0]["url"] = json!("https://ci.example.com/runs/1");
        }),
        ("no metrics", |v| v["metrics"] = json!([])),
        ("a policy change", |v| {
            v["gate"] = json!("policy");
            v["policy"] = json!({"text": "version = 1\n", "base_digest": format!("sha256:{}", "a".repeat(64))});
        }),
        ("a policy object on another gate", |v| {
            v["policy"] = json!({"anything": 1})
        }),
    ]
}

#[test]
fn every_fixture_is_valid_under_the_schema_and_the_validator() {
    let schema = schema();
    for id in ["CR-1042", "CR-1043", "CR-1044", "CR-1045", "CR-1046"] {
        let v = fixture_json(id);
        let errors: Vec<String> = schema.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{id}: {errors:?}");
        assert!(from_value(&v).is_ok(), "{id}");
    }
}

#[test]
fn schema_and_validator_refuse_the_same_bad_documents() {
    let schema = schema();
    for (name, mutate) in cases_refused() {
        let mut v = fixture_json("CR-1042");
        mutate(&mut v);
        assert!(!schema.is_valid(&v), "schema accepted: {name}");
        assert!(from_value(&v).is_err(), "validator accepted: {name}");
    }
}

#[test]
fn schema_and_validator_accept_the_same_variations() {
    let schema = schema();
    for (name, mutate) in cases_accepted() {
        let mut v = fixture_json("CR-1042");
        mutate(&mut v);
        let errors: Vec<String> = schema.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "schema refused {name}: {errors:?}");
        assert!(
            from_value(&v).is_ok(),
            "validator refused {name}: {:?}",
            from_value(&v).err()
        );
    }
}
