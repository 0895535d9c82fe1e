//! A person's sessions as an administrator sees them: listed and ended by username (the admin
//! API), and ended when the person's password is reset or the user is deleted, so every client
//! that registered a back-channel logout URI hears of it. Found through the `v/` index
//! ([`SessionIndexRecord`]), which each session's own batches keep. Also the grants a session
//! issued, each under a key of its own ([`SessionGrantRecord`]).

use writ_store::{AsyncStoreExt, Batch, Tree, encode};
use writ_token::RevocationKind;

use crate::error::{Error, Result};
use crate::records::{SessionGrantRecord, SessionIndexRecord, SessionRecord, UserRecord};
use crate::signin::{LogoutNotice, MAX_SESSION_GRANTS, prefixed};
use crate::users::valid_username;
use crate::{AuthorizationServer, valid_id};

/// Most sessions [`AuthorizationServer::user_sessions`] lists (the newest).
pub const MAX_LISTED_SESSIONS: usize = 100;

/// Index entries read per page when ending every session of a person.
const PAGE: usize = 1000;

/// Who ends a session, which decides what else happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The person (logout, another user signing in in the browser): the record names them.
    ByUser,
    /// An administrator: the grants are revoked; the record names the administrator.
    ByAdmin,
    /// A cut-off of the subject (password reset, deletion) already revoked every grant.
    CutOff,
}

/// What ending a person's sessions did.
#[derive(Debug, Default)]
pub struct SessionsEnded {
    pub ended: usize,
    /// Logout tokens for the transport to deliver: those of the sessions that ended, even when
    /// another could not be.
    pub notices: Vec<LogoutNotice>,
    /// Why a session could not be ended, if one could not (the others were).
    pub failed: Option<Error>,
}

/// A session as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub sid: String,
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub amr: Vec<String>,
    /// The clients it signed in to, each once, sorted.
    pub client_ids: Vec<String>,
}

impl AuthorizationServer {
    fn session_index_prefix(&self, subject: &str) -> Vec<u8> {
        prefixed(b"v/", &self.hasher.hash(subject.as_bytes()))
    }

    pub(crate) fn session_index_key(&self, subject: &str, sid: &str) -> Vec<u8> {
        let mut key = self.session_index_prefix(subject);
        key.extend_from_slice(sid.as_bytes());
        key
    }

    async fn user_by_name(&self, username: &str) -> Result<UserRecord> {
        if !valid_username(username) {
            return Err(Error::InvalidRequest("username is malformed"));
        }
        self.store
            .get_record::<UserRecord>(username.as_bytes())
            .await?
            .ok_or(Error::NotFound("no such user"))
    }

    /// `username`'s live sessions (not expired, not cut off), newest first, at most
    /// [`MAX_LISTED_SESSIONS`].
    pub async fn user_sessions(&self, username: &str) -> Result<Vec<SessionInfo>> {
        let user = self.user_by_name(username).await?;
        let now = self.now();
        let mut sessions = Vec::new();
        for (_, bytes) in self.session_index(&user.subject).await? {
            let index: SessionIndexRecord = writ_store::decode(&bytes)?;
            if index.expires_at <= now {
                continue;
            }
            let Some(session) = self
                .store
                .get_record::<SessionRecord>(&index.session_key)
                .await?
            else {
                continue;
            };
            if session.subject != user.subject
                || now >= session.expires_at
                || self
                    .is_revoked(RevocationKind::Subject, &session.subject, session.auth_time)
                    .await?
            {
                continue;
            }
            let mut client_ids: Vec<String> = self
                .session_grants(&session)
                .await?
                .into_iter()
                .map(|g| g.client_id)
                .filter(|c| !c.is_empty())
                .collect();
            client_ids.sort();
            client_ids.dedup();
            sessions.push(SessionInfo {
                sid: session.sid,
                auth_time: session.auth_time,
                created_at: session.created_at,
                expires_at: session.expires_at,
                amr: session.amr,
                client_ids,
            });
        }
        sessions.sort_by(|a, b| (b.created_at, &b.sid).cmp(&(a.created_at, &a.sid)));
        sessions.truncate(MAX_LISTED_SESSIONS);
        Ok(sessions)
    }

    /// Ends `username`'s session `sid`, or every session of theirs when `sid` is empty (an
    /// administrator's sign-out): each session's grants are revoked through the feed, so guards
    /// refuse its tokens and its refresh tokens stop working. One `session_ended` record per
    /// session.
    pub async fn end_user_sessions(&self, username: &str, sid: &str) -> Result<SessionsEnded> {
        if !sid.is_empty() && !valid_id(sid) {
            return Err(Error::InvalidRequest("sid is malformed"));
        }
        let user = self.user_by_name(username).await?;
        let sid = (!sid.is_empty()).then_some(sid);
        let ended = self
            .end_sessions_of(
                &user.subject,
                sid,
                "ended by an administrator",
                Ending::ByAdmin,
            )
            .await?;
        if sid.is_some() && ended.ended == 0 && ended.failed.is_none() {
            return Err(Error::NotFound("no such session"));
        }
        Ok(ended)
    }

    /// Ends `subject`'s session `sid`, or all of them: past a session that cannot be ended, on
    /// to the others.
    pub(crate) async fn end_sessions_of(
        &self,
        subject: &str,
        sid: Option<&str>,
        why: &str,
        ending: Ending,
    ) -> Result<SessionsEnded> {
        let entries = match sid {
            Some(sid) => {
                let key = self.session_index_key(subject, sid);
                match self.store.get(Tree::SignIn, &key).await? {
                    Some(bytes) => vec![(key, bytes)],
                    None => Vec::new(),
                }
            }
            None => self.session_index(subject).await?,
        };
        let mut out = SessionsEnded::default();
        for (key, bytes) in entries {
            match self.end_indexed_session(&key, bytes, why, ending).await {
                Ok(Some(notices)) => {
                    out.ended += 1;
                    out.notices.extend(notices);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "a session could not be ended");
                    out.failed.get_or_insert(e);
                }
            }
        }
        Ok(out)
    }

    /// Ends the session the index entry under `key` (`bytes`, as read) points at. A renewal
    /// moves a session under a new key and rewrites its entry: followed, a few times. An entry
    /// whose session is gone is removed, only as it was read. A cut-off ends only the sessions
    /// it covers: one signed in (or renewed) since is not its to end.
    async fn end_indexed_session(
        &self,
        key: &[u8],
        mut bytes: Vec<u8>,
        why: &str,
        ending: Ending,
    ) -> Result<Option<Vec<LogoutNotice>>> {
        for _ in 0..4 {
            let index: SessionIndexRecord = writ_store::decode(&bytes)?;
            if ending == Ending::CutOff
                && let Some(session) = self
                    .store
                    .get_record::<SessionRecord>(&index.session_key)
                    .await?
                && !self
                    .is_revoked(RevocationKind::Subject, &session.subject, session.auth_time)
                    .await?
            {
                return Ok(None);
            }
            if let Some(notices) = self
                .end_stored_session(&index.session_key, why, ending)
                .await?
            {
                return Ok(Some(notices));
            }
            let gone = Batch::new()
                .expect(key.to_vec(), Some(bytes.clone()))
                .remove(key.to_vec());
            if self.store.commit(Tree::SignIn, gone).await? {
                return Ok(None);
            }
            match self.store.get(Tree::SignIn, key).await? {
                Some(b) => bytes = b,
                None => return Ok(None),
            }
        }
        Err(Error::Conflict("the session changed concurrently; retry"))
    }

    /// The live session `sid` of `subject`, last known under `key`: its key, its bytes as read
    /// (for a compare-and-swap) and the record. A renewal moves a session under a new key and
    /// rewrites its index entry in the same batch: followed while the entry keeps changing.
    pub(crate) async fn session_of(
        &self,
        subject: &str,
        sid: &str,
        key: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>, SessionRecord)>> {
        let live = |bytes: &[u8]| -> Result<Option<SessionRecord>> {
            let session: SessionRecord = writ_store::decode(bytes)?;
            let live =
                session.sid == sid && session.subject == subject && self.now() < session.expires_at;
            Ok(live.then_some(session))
        };
        if let Some(bytes) = self.store.get(Tree::SignIn, key).await? {
            return Ok(live(&bytes)?.map(|s| (key.to_vec(), bytes, s)));
        }
        let index_key = self.session_index_key(subject, sid);
        let mut followed: Option<Vec<u8>> = Some(key.to_vec());
        for _ in 0..4 {
            let Some(index) = self
                .store
                .get_record::<SessionIndexRecord>(&index_key)
                .await?
            else {
                return Ok(None);
            };
            if followed.as_ref() == Some(&index.session_key) {
                // The same entry, its session gone: ended, not yet pruned.
                return Ok(None);
            }
            if let Some(bytes) = self.store.get(Tree::SignIn, &index.session_key).await? {
                return Ok(live(&bytes)?.map(|s| (index.session_key, bytes, s)));
            }
            followed = Some(index.session_key);
        }
        Ok(None)
    }

    /// Every index entry of `subject`'s sessions, as stored. Not bounded by count: each is a
    /// session this server opened and has not yet pruned, at most one per sign-in within a
    /// session lifetime.
    async fn session_index(&self, subject: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = self.session_index_prefix(subject);
        let mut entries = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .scan(Tree::SignIn, &prefix, after.as_deref(), PAGE)
                .await?;
            let full = page.len() == PAGE;
            after = page.last().map(|(k, _)| k.clone());
            entries.extend(page);
            if !full {
                return Ok(entries);
            }
        }
    }
}

/// One grant a session issued: where it is listed (`None`: in a session record written before
/// grants had keys of their own), its id and its client.
pub(crate) struct SessionGrant {
    pub key: Option<Vec<u8>>,
    pub gid: String,
    pub client_id: String,
}

fn session_grant_prefix(sid: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(3 + sid.len() + 8);
    key.extend_from_slice(b"q/");
    key.extend_from_slice(sid.as_bytes());
    key.push(b'/');
    key
}

fn session_grant_key(sid: &str, number: u64) -> Vec<u8> {
    let mut key = session_grant_prefix(sid);
    key.extend_from_slice(&number.to_be_bytes());
    key
}

impl AuthorizationServer {
    /// Every grant `session` issued and still lists, oldest first.
    pub(crate) async fn session_grants(
        &self,
        session: &SessionRecord,
    ) -> Result<Vec<SessionGrant>> {
        let mut grants: Vec<SessionGrant> = session
            .gids
            .iter()
            .enumerate()
            .map(|(i, gid)| SessionGrant {
                key: None,
                gid: gid.clone(),
                client_id: session.gid_clients.get(i).cloned().unwrap_or_default(),
            })
            .collect();
        let prefix = session_grant_prefix(&session.sid);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .scan_records::<SessionGrantRecord>(&prefix, after.as_deref(), PAGE)
                .await?;
            let full = page.len() == PAGE;
            after = page.last().map(|(k, _)| k.clone());
            grants.extend(page.into_iter().map(|(key, g)| SessionGrant {
                key: Some(key),
                gid: g.gid,
                client_id: g.client_id,
            }));
            if !full {
                return Ok(grants);
            }
        }
    }

    /// Lists a grant in `session` (its record is then written by the caller, expected as read,
    /// with `batch`); past [`MAX_SESSION_GRANTS`] the oldest are revoked first (before the batch
    /// that forgets them is written). Returns `batch` with the listing.
    pub(crate) async fn admit_grant(
        &self,
        session: &mut SessionRecord,
        gid: &str,
        client_id: &str,
        mut batch: Batch,
    ) -> Result<Batch> {
        let number = session.grants_issued;
        session.grants_issued += 1;
        let listed = SessionGrantRecord {
            gid: gid.to_owned(),
            client_id: client_id.to_owned(),
            subject: session.subject.clone(),
            expires_at: session.expires_at,
        };
        batch = batch.put(session_grant_key(&session.sid, number), encode(&listed));
        let mut oldest = Vec::new();
        while session.grants_issued - session.oldest_grant > MAX_SESSION_GRANTS as u64 {
            let key = session_grant_key(&session.sid, session.oldest_grant);
            if let Some(g) = self.store.get_record::<SessionGrantRecord>(&key).await? {
                oldest.push(g.gid);
                batch = batch.remove(key);
            }
            session.oldest_grant += 1;
        }
        self.revoke_grants(&oldest, "the session's oldest grant, past its bound")
            .await?;
        Ok(batch)
    }

    /// Removes sessions past their end; and, once per process, gives a live session without an
    /// index entry (opened before the index existed) one, so the admin API and a password
    /// reset find it.
    pub(crate) async fn prune_sessions(&self, now: i64, margin: i64) -> Result<usize> {
        use std::sync::atomic::Ordering;
        let indexing = !self.sessions_indexed.load(Ordering::Relaxed);
        let mut removed = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .scan_records::<SessionRecord>(b"s/", after.as_deref(), PAGE)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, session) in page {
                if session.expires_at + margin < now {
                    self.store.remove(Tree::SignIn, &key).await?;
                    removed += 1;
                } else if indexing {
                    let index_key = self.session_index_key(&session.subject, &session.sid);
                    let entry = SessionIndexRecord {
                        session_key: key,
                        expires_at: session.expires_at,
                    };
                    // Only where there is none: a renewal meanwhile wrote its own.
                    let batch = Batch::new()
                        .expect(index_key.clone(), None)
                        .put(index_key, encode(&entry));
                    self.store.commit(Tree::SignIn, batch).await?;
                }
            }
        }
        self.sessions_indexed.store(true, Ordering::Relaxed);
        Ok(removed)
    }

    /// Removes what lists the grants of sessions gone: a listing outlives its session's end
    /// (as it was when the grant was issued) only while the session, renewed, still lives.
    pub(crate) async fn prune_session_grants(&self, now: i64, margin: i64) -> Result<usize> {
        let mut removed = 0;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .scan_records::<SessionGrantRecord>(b"q/", after.as_deref(), PAGE)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, grant) in page {
                if grant.expires_at + margin >= now {
                    continue;
                }
                // `q/` + sid + `/` + 8 bytes.
                let sid = key
                    .get(2..key.len().saturating_sub(9))
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .unwrap_or_default();
                let index = self
                    .store
                    .get_record::<SessionIndexRecord>(&self.session_index_key(&grant.subject, sid))
                    .await?;
                if index.is_some_and(|i| i.expires_at + margin >= now) {
                    continue;
                }
                self.store.remove(Tree::SignIn, &key).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
