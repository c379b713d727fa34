//! The node's errors in Redis's words, chosen by the error's type, never by its text.

use crate::proto::ClientError;
use crate::resp::codec::Reply;
use crate::Error;

/// The reply for a failed request.
///
/// `READONLY` for a write a replica refused, `NOREPLICAS` when a primary has too few replicas
/// online, `CLUSTERDOWN` when a quorum could not be met, `TRYAGAIN` for every other error
/// that may pass if retried unchanged, `ERR` for the rest.
pub(crate) fn reply(e: &Error) -> Reply {
    match e {
        Error::Request(ce) => client_error(ce),
        Error::Shutdown => Reply::err("the node is shutting down"),
        other => Reply::err(other),
    }
}

fn client_error(ce: &ClientError) -> Reply {
    let word = match ce.kind() {
        "readonly" => "READONLY",
        "no_replicas" => "NOREPLICAS",
        "quorum_failed" => "CLUSTERDOWN",
        _ if ce.retryable() => "TRYAGAIN",
        _ => "ERR",
    };
    let text = ce.to_string();
    // Some messages (READONLY, NOREPLICAS) already start with the word.
    let text = text.strip_prefix(&format!("{word} ")).unwrap_or(&text);
    Reply::Error(format!("{word} {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(e: ClientError) -> String {
        match reply(&Error::Request(e)) {
            Reply::Error(s) => s.split(' ').next().unwrap_or_default().to_string(),
            other => panic!("not an error reply: {other:?}"),
        }
    }

    #[test]
    fn errors_map_to_redis_words_by_type() {
        assert_eq!(word(ClientError::ReadOnly { primary: None }), "READONLY");
        let quorum = ClientError::QuorumFailed {
            op: "write".into(),
            needed: 2,
            replicas: 3,
            ok: 1,
            detail: String::new(),
        };
        assert_eq!(word(quorum), "CLUSTERDOWN");
        assert_eq!(word(ClientError::Overloaded { in_flight: 9 }), "TRYAGAIN");
        assert_eq!(word(ClientError::Electing), "TRYAGAIN");
        let few = ClientError::NoReplicas {
            needed: 2,
            online: 1,
            syncing: 0,
        };
        assert_eq!(word(few.clone()), "NOREPLICAS");
        assert!(
            matches!(reply(&Error::Request(few)), Reply::Error(s) if !s.contains("NOREPLICAS NOREPLICAS"))
        );
        assert_eq!(
            word(ClientError::NotPrimary {
                primary: None,
                epoch: 1
            }),
            "TRYAGAIN"
        );
        assert_eq!(word(ClientError::BadKey { size: 0, max: 4 }), "ERR");
        let readonly = reply(&Error::Request(ClientError::ReadOnly {
            primary: Some("n2".into()),
        }));
        assert!(
            matches!(&readonly, Reply::Error(s) if !s.contains("READONLY READONLY") && s.contains("n2")),
            "{readonly:?}"
        );
    }
}
