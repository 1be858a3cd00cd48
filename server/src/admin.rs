//! `duet-server rooms ...` on any backend: documents exported and imported as text or as a Yjs
//! update, on top of [`RoomAdmin`], which each store implements.

use crate::compaction::{CompactError, encode_state, merge};
use crate::doc::{ROOT_TEXT, new_doc, text_of};
use crate::store::{AdminError, RoomAdmin};
use duet_protocol::RoomName;
use yrs::{Text, Transact};

/// How a document is written out or read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The root text "content", as UTF-8.
    Text,
    /// A Yjs v1 update holding the whole document (`Y.applyUpdate` loads it).
    Yjs,
}

fn bad(e: CompactError) -> AdminError {
    match e {
        CompactError::Store(e) => AdminError::Store(e),
        e => AdminError::BadInput(e.to_string()),
    }
}

/// The document of `room` in `format`.
pub async fn export(
    admin: &dyn RoomAdmin,
    room: &RoomName,
    format: Format,
) -> Result<Vec<u8>, AdminError> {
    let stored = admin.export(room).await?;
    let doc = merge(room, &stored.updates).map_err(|e| match e {
        CompactError::Store(e) => AdminError::Store(e),
        e => AdminError::Store(crate::store::StoreError::Corrupt {
            room: room.to_string(),
            reason: e.to_string(),
        }),
    })?;
    Ok(match format {
        Format::Text => text_of(&doc).into_bytes(),
        Format::Yjs => encode_state(room, &doc).map_err(bad)?,
    })
}

/// Creates `room` holding the document in `bytes` (checked: it must apply, whole). Refuses if
/// the room exists.
pub async fn import(
    admin: &dyn RoomAdmin,
    room: &RoomName,
    bytes: &[u8],
    format: Format,
) -> Result<(), AdminError> {
    let state = match format {
        Format::Yjs => {
            let doc = merge(room, &[bytes.to_vec()]).map_err(bad)?;
            encode_state(room, &doc).map_err(bad)?
        }
        Format::Text => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| AdminError::BadInput(format!("the text file is not UTF-8: {e}")))?;
            let doc = new_doc();
            doc.get_or_insert_text(ROOT_TEXT)
                .insert(&mut doc.transact_mut(), 0, text);
            encode_state(room, &doc).map_err(bad)?
        }
    };
    admin.import(room, state).await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    /// The same commands on every backend (the SQLite one in `sqlite/tests.rs`).
    pub(crate) async fn imports_exports_and_deletes(admin: &dyn RoomAdmin) {
        let notes = RoomName::new("notes").expect("valid");
        let copy = RoomName::new("copy").expect("valid");
        import(admin, &notes, "hello wörld".as_bytes(), Format::Text)
            .await
            .expect("imports");
        assert!(matches!(
            import(admin, &notes, b"x", Format::Text).await,
            Err(AdminError::RoomExists(_))
        ));
        assert_eq!(
            export(admin, &notes, Format::Text).await.expect("exports"),
            "hello wörld".as_bytes()
        );
        let yjs = export(admin, &notes, Format::Yjs).await.expect("exports");
        import(admin, &copy, &yjs, Format::Yjs)
            .await
            .expect("imports yjs");
        assert_eq!(
            export(admin, &copy, Format::Text).await.expect("exports"),
            "hello wörld".as_bytes()
        );
        let bad = RoomName::new("bad").expect("valid");
        assert!(matches!(
            import(admin, &bad, b"\xff\xff\xff", Format::Yjs).await,
            Err(AdminError::BadInput(_))
        ));
        admin.delete(&notes).await.expect("deletes");
        assert!(matches!(
            export(admin, &notes, Format::Text).await,
            Err(AdminError::NoSuchRoom(_))
        ));
        assert!(matches!(
            admin.delete(&notes).await,
            Err(AdminError::NoSuchRoom(_))
        ));
        let rooms = admin.list().await.expect("lists");
        let names: Vec<&str> = rooms.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["copy"]);
        assert_eq!(rooms[0].log_updates, 1);
        assert_eq!(rooms[0].head, crate::store::Seq(1));
    }

    #[tokio::test]
    async fn the_memory_store_administers_its_rooms() {
        imports_exports_and_deletes(&MemoryStore::default()).await;
    }
}
