//! Automatic persisted queries, Apollo's protocol version 1: a request may carry
//! `extensions.persistedQuery = {"version": 1, "sha256Hash": "<64 lowercase hex digits>"}`.
//!
//! - hash alone, known: the cached document runs (parsed once; validated once where the verdict
//!   surely answers for the request's variables, see `loyalty_graphql::ValidationMemo`);
//! - hash alone, unknown: `PersistedQueryNotFound` / `PERSISTED_QUERY_NOT_FOUND`, on which
//!   Apollo Client and urql resend the same request with its text;
//! - hash and text: the text must hash to it (`PERSISTED_QUERY_HASH_MISMATCH` otherwise, nothing
//!   runs), then it is kept and runs.
//!
//! The cache is content-addressed (a document is only ever stored under the hash of its own
//! text), so nobody can make a hash mean something else; filling it only evicts. It is bounded
//! in documents and in total text, least recently used first, and per process: another replica
//! answers "not found" once and learns the document from the client's retry.

use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument};
use async_graphql::{ErrorExtensionValues, Request, ServerError};
use hashlink::LruCache;
use loyalty_graphql::ValidationMemo;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::cost::Prechecks;
use crate::http::errors::VALIDATION;

pub const NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
pub const NOT_SUPPORTED: &str = "PERSISTED_QUERY_NOT_SUPPORTED";
pub const HASH_MISMATCH: &str = "PERSISTED_QUERY_HASH_MISMATCH";

/// The name clients look for in `extensions`.
const EXTENSION: &str = "persistedQuery";

/// A request whose persisted query is resolved, with what the transports check before it runs.
pub struct Prepared {
    pub request: Request,
    /// `Err` when the text does not parse (execution reports it like any syntax error).
    pub checks: Result<Prechecks, ServerError>,
}

/// A document kept by hash: parsed once, with its pre-checks for every operation name that
/// selects something.
struct Document {
    parsed: ExecutableDocument,
    text_bytes: usize,
    prechecks: Vec<(Option<String>, Prechecks)>,
    validation: Option<ValidationMemo>,
}

impl Document {
    fn new(parsed: ExecutableDocument, text_bytes: usize) -> Self {
        let mut names = vec![None];
        if let DocumentOperations::Multiple(operations) = &parsed.operations {
            names.extend(operations.keys().map(|name| Some(name.to_string())));
        }
        let prechecks = names
            .into_iter()
            .map(|name| {
                let checks = Prechecks::of(&parsed, name.as_deref());
                (name, checks)
            })
            .collect();
        let validation = ValidationMemo::for_document(&parsed);
        Document {
            parsed,
            text_bytes,
            prechecks,
            validation,
        }
    }

    fn prechecks(&self, name: Option<&str>) -> Prechecks {
        self.prechecks
            .iter()
            .find(|(known, _)| known.as_deref() == name)
            .map(|(_, checks)| *checks)
            // A name the document does not define: execution refuses it, the price is still due.
            .unwrap_or_else(|| Prechecks::of(&self.parsed, name))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Extension {
    version: i64,
    sha256_hash: String,
}

/// The documents kept by hash.
pub struct PersistedQueries {
    max_documents: usize,
    max_bytes: usize,
    cache: Mutex<Cache>,
}

struct Cache {
    documents: LruCache<[u8; 32], Arc<Document>>,
    bytes: usize,
}

impl PersistedQueries {
    /// At most `max_documents` documents (0 turns the protocol off) holding at most `max_bytes`
    /// of query text together.
    pub fn new(max_documents: usize, max_bytes: usize) -> Self {
        PersistedQueries {
            max_documents,
            max_bytes,
            cache: Mutex::new(Cache {
                documents: LruCache::new_unbounded(),
                bytes: 0,
            }),
        }
    }

    /// Resolves the request's persisted query, if any, and reads its pre-checks from the cached
    /// document or from the text, parsed once. `Err` is the protocol's refusal for this request
    /// alone (in a batch the others still run).
    pub fn prepare(&self, mut request: Request) -> Result<Prepared, ServerError> {
        let name = request.operation_name.clone();
        if let Some(document) = self.resolve(&mut request)? {
            let checks = Ok(document.prechecks(name.as_deref()));
            // A memo answers for the document's one operation only.
            let selected = loyalty_graphql::selected_operation(&document.parsed, name.as_deref());
            if let (Some(memo), Some(_)) = (&document.validation, selected) {
                request = request.data(memo.clone());
            }
            return Ok(Prepared { request, checks });
        }
        let checks = request
            .parsed_query()
            .map(|document| Prechecks::of(document, name.as_deref()));
        Ok(Prepared { request, checks })
    }

    /// The cached document the request names, its parsed copy set on the request; `None`
    /// without the extension, or when the text does not parse (not kept).
    fn resolve(&self, request: &mut Request) -> Result<Option<Arc<Document>>, ServerError> {
        let Some(value) = request.extensions.get(EXTENSION) else {
            return Ok(None);
        };
        if self.max_documents == 0 {
            return Err(refusal(NOT_SUPPORTED, "PersistedQueryNotSupported"));
        }
        let extension: Extension = async_graphql::from_value(value.clone()).map_err(|_| {
            refusal(
                VALIDATION,
                "extensions.persistedQuery must be {\"version\": 1, \"sha256Hash\": \"…\"}",
            )
        })?;
        if extension.version != 1 {
            let message = format!(
                "persisted query version {} is not supported; send version 1",
                extension.version
            );
            return Err(refusal(VALIDATION, &message));
        }
        let hash = parse_hash(&extension.sha256_hash)?;
        let document = if request.query.is_empty() {
            self.get(&hash)
                .ok_or_else(|| refusal(NOT_FOUND, "PersistedQueryNotFound"))?
        } else {
            if <[u8; 32]>::from(Sha256::digest(request.query.as_bytes())) != hash {
                return Err(refusal(
                    HASH_MISMATCH,
                    "extensions.persistedQuery.sha256Hash is not the SHA-256 of the query text",
                ));
            }
            match self.get(&hash) {
                Some(document) => document,
                None => {
                    let Ok(parsed) = async_graphql::parser::parse_query(&request.query) else {
                        return Ok(None);
                    };
                    let document = Arc::new(Document::new(parsed, request.query.len()));
                    self.put(hash, document.clone());
                    document
                }
            }
        };
        request.set_parsed_query(document.parsed.clone());
        Ok(Some(document))
    }

    fn get(&self, hash: &[u8; 32]) -> Option<Arc<Document>> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.documents.get(hash).cloned()
    }

    /// Keeps `document`, evicting the least recently used ones over either bound; a document
    /// larger than the whole text budget is not kept.
    fn put(&self, hash: [u8; 32], document: Arc<Document>) {
        if document.text_bytes > self.max_bytes {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.bytes += document.text_bytes;
        if let Some(replaced) = cache.documents.insert(hash, document) {
            cache.bytes -= replaced.text_bytes;
        }
        while cache.documents.len() > self.max_documents || cache.bytes > self.max_bytes {
            let Some((_, evicted)) = cache.documents.remove_lru() else {
                break;
            };
            cache.bytes -= evicted.text_bytes;
        }
    }
}

/// A SHA-256 in lowercase hex, as every APQ client sends it.
fn parse_hash(hex: &str) -> Result<[u8; 32], ServerError> {
    let mut hash = [0u8; 32];
    let lowercase = hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !lowercase || hex::decode_to_slice(hex, &mut hash).is_err() {
        return Err(refusal(
            VALIDATION,
            "extensions.persistedQuery.sha256Hash must be 64 lowercase hexadecimal digits",
        ));
    }
    Ok(hash)
}

fn refusal(code: &str, message: &str) -> ServerError {
    let mut error = ServerError::new(message, None);
    error
        .extensions
        .get_or_insert_with(ErrorExtensionValues::default)
        .set("code", code);
    error
}

#[cfg(test)]
mod tests {
    use async_graphql::Value;

    use super::*;

    fn hash_of(text: &str) -> String {
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    fn request(text: &str, hash: &str) -> Request {
        let mut request = Request::new(text);
        let extension = serde_json::json!({"version": 1, "sha256Hash": hash});
        request
            .extensions
            .insert(EXTENSION.to_owned(), Value::from_json(extension).unwrap());
        request
    }

    fn code(refused: Result<Prepared, ServerError>) -> String {
        let Err(error) = refused else {
            panic!("expected a refusal");
        };
        match error.extensions.as_ref().and_then(|e| e.get("code")) {
            Some(Value::String(code)) => code.clone(),
            other => panic!("no code: {other:?}"),
        }
    }

    #[test]
    fn a_hash_is_learned_from_its_text_and_evicted_least_recently_used_first() {
        let cache = PersistedQueries::new(2, 1024);
        let [a, b, c] = ["{ a }", "{ b }", "{ c }"];
        assert_eq!(code(cache.prepare(request("", &hash_of(a)))), NOT_FOUND);
        for text in [a, b] {
            cache.prepare(request(text, &hash_of(text))).unwrap();
        }
        let hit = cache.prepare(request("", &hash_of(a))).unwrap();
        assert!(hit.checks.is_ok());
        // `a` was used last, so `b` goes when `c` arrives.
        cache.prepare(request(c, &hash_of(c))).unwrap();
        assert_eq!(code(cache.prepare(request("", &hash_of(b)))), NOT_FOUND);
        cache.prepare(request("", &hash_of(a))).unwrap();
        cache.prepare(request("", &hash_of(c))).unwrap();
    }

    #[test]
    fn the_text_budget_bounds_the_cache_too() {
        let cache = PersistedQueries::new(100, 12);
        let [a, b] = ["{ aaaa }", "{ bbbb }"];
        let too_long = "{ cccccccccccc }";
        for text in [a, b, too_long] {
            cache.prepare(request(text, &hash_of(text))).unwrap();
        }
        assert_eq!(code(cache.prepare(request("", &hash_of(a)))), NOT_FOUND);
        cache.prepare(request("", &hash_of(b))).unwrap();
        let hash = hash_of(too_long);
        assert_eq!(code(cache.prepare(request("", &hash))), NOT_FOUND);
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let cache = PersistedQueries::new(10, 1024);
        let other = hash_of("{ b }");
        assert_eq!(code(cache.prepare(request("{ a }", &other))), HASH_MISMATCH);
        assert_eq!(code(cache.prepare(request("", &other))), NOT_FOUND);
        let upper = hash_of("{ a }").to_uppercase();
        assert_eq!(code(cache.prepare(request("{ a }", &upper))), VALIDATION);
        assert_eq!(code(cache.prepare(request("", "abc"))), VALIDATION);
        let mut version_2 = request("", &other);
        version_2.extensions.insert(
            EXTENSION.to_owned(),
            Value::from_json(serde_json::json!({"version": 2, "sha256Hash": other})).unwrap(),
        );
        assert_eq!(code(cache.prepare(version_2)), VALIDATION);
        let off = PersistedQueries::new(0, 1024);
        assert_eq!(code(off.prepare(request("", &other))), NOT_SUPPORTED);
    }

    #[test]
    fn prechecks_come_from_the_cached_document() {
        let cache = PersistedQueries::new(10, 1024);
        let text = "query Q { a } mutation M { a b c }";
        let stored = cache.prepare(request(text, &hash_of(text))).unwrap();
        assert_eq!(stored.checks.unwrap().root_mutation_fields, 3);
        let named = request("", &hash_of(text)).operation_name("M");
        let checks = cache.prepare(named).unwrap().checks.unwrap();
        assert_eq!(checks.root_mutation_fields, 3);
        let named = request("", &hash_of(text)).operation_name("Q");
        let checks = cache.prepare(named).unwrap().checks.unwrap();
        assert_eq!(checks.root_mutation_fields, 0);
        // Without the extension nothing is cached or looked up.
        let plain = cache.prepare(Request::new("mutation { a b }")).unwrap();
        assert_eq!(plain.checks.unwrap().root_mutation_fields, 2);
        assert!(cache
            .prepare(Request::new("not graphql"))
            .unwrap()
            .checks
            .is_err());
    }
}
