//! `TokenCodec`, `Claims` and the token exceptions.

use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::json;
use crate::clock;
use crate::jwt::{ClaimsData, Codec, HasClaims, Keys, TokenError as Error, TokenStore};

create_exception!(
    pygw._native,
    TokenError,
    PyException,
    "A token was refused."
);
create_exception!(
    pygw._native,
    InvalidToken,
    TokenError,
    "Malformed, wrongly signed, not yet valid or of the wrong type."
);
create_exception!(
    pygw._native,
    ExpiredToken,
    TokenError,
    "The token's exp has passed."
);
create_exception!(
    pygw._native,
    RevokedToken,
    TokenError,
    "The token's jti was revoked, or its user's token generation floor rose above it."
);

fn to_py(err: Error) -> PyErr {
    match err {
        Error::Invalid(_) => InvalidToken::new_err(err.to_string()),
        Error::Expired => ExpiredToken::new_err(err.to_string()),
        Error::Revoked => RevokedToken::new_err(err.to_string()),
    }
}

/// The claims of a verified token.
#[pyclass(module = "pygw._native", frozen)]
pub struct Claims(ClaimsData);

impl HasClaims for Py<Claims> {
    fn claims(&self) -> &ClaimsData {
        &self.get().0
    }
}

#[pymethods]
impl Claims {
    #[getter]
    fn sub(&self) -> &str {
        &self.0.sub
    }

    #[getter]
    fn user_id(&self) -> &str {
        &self.0.user_id
    }

    #[getter]
    fn role(&self) -> &str {
        &self.0.role
    }

    #[getter]
    fn exp(&self) -> i64 {
        self.0.exp
    }

    #[getter]
    fn iat(&self) -> Option<i64> {
        self.0.iat
    }

    #[getter]
    fn jti(&self) -> Option<&str> {
        self.0.jti.as_deref()
    }

    #[getter]
    fn sid(&self) -> Option<&str> {
        self.0.sid.as_deref()
    }

    #[getter]
    fn typ(&self) -> &str {
        &self.0.typ
    }

    #[getter]
    fn fam(&self) -> Option<&str> {
        self.0.fam.as_deref()
    }

    #[getter]
    fn gen(&self) -> i64 {
        self.0.generation
    }

    /// Every claim of the payload, including unknown ones.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        Ok(json::loads(py, &self.0.payload)?.cast_into::<PyDict>()?)
    }

    fn __repr__(&self) -> String {
        let c = &self.0;
        format!(
            "Claims(sub={:?}, user_id={:?}, role={:?}, typ={:?}, exp={}, jti={:?})",
            c.sub, c.user_id, c.role, c.typ, c.exp, c.jti
        )
    }
}

/// Signs and verifies JWTs, with a cache of verified tokens and a
/// revocation list.
#[pyclass(module = "pygw._native", frozen)]
pub struct TokenCodec {
    codec: Codec,
    store: Mutex<TokenStore<Py<Claims>>>,
}

impl TokenCodec {
    fn store(&self) -> MutexGuard<'_, TokenStore<Py<Claims>>> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl TokenCodec {
    #[new]
    #[pyo3(signature = (
        algorithm,
        *,
        secret = None,
        private_key_pem = None,
        public_key_pem = None,
        cache_size = 100_000,
        leeway = 0,
    ))]
    fn new(
        algorithm: &str,
        secret: Option<&[u8]>,
        private_key_pem: Option<&[u8]>,
        public_key_pem: Option<&[u8]>,
        cache_size: usize,
        leeway: i64,
    ) -> PyResult<Self> {
        if leeway < 0 {
            return Err(PyValueError::new_err("leeway must be >= 0"));
        }
        let keys = Keys {
            secret,
            private_key_pem,
            public_key_pem,
        };
        let codec = Codec::new(algorithm, keys).map_err(PyValueError::new_err)?;
        Ok(TokenCodec {
            codec,
            store: Mutex::new(TokenStore::new(cache_size, leeway)),
        })
    }

    /// Signs a JSON object payload (embedded verbatim).
    fn sign(&self, py: Python<'_>, payload_json: &[u8]) -> PyResult<String> {
        let signed = if self.codec.is_asymmetric() {
            py.detach(|| self.codec.sign(payload_json))
        } else {
            self.codec.sign(payload_json)
        };
        signed.map_err(PyValueError::new_err)
    }

    /// Verifies `token` (cached verifies first). With `cache=False` a token not
    /// already cached is verified without being added: a WebSocket verifies its
    /// token once, and an entry (~1 KiB with the token as its key) per idle
    /// socket would be most of its memory.
    #[pyo3(signature = (token, now = None, typ = "access", cache = true))]
    fn verify(
        &self,
        py: Python<'_>,
        token: &str,
        now: Option<i64>,
        typ: &str,
        cache: bool,
    ) -> PyResult<Py<Claims>> {
        let now = now.unwrap_or_else(clock::unix_seconds);
        if let Some(hit) = self.store().cached(token, now, typ) {
            return hit.map(|claims| claims.clone_ref(py)).map_err(to_py);
        }
        let decoded = if self.codec.is_asymmetric() {
            py.detach(|| self.codec.decode(token))
        } else {
            self.codec.decode(token)
        };
        // Allocate before locking: allocation may run the GC, and with it
        // arbitrary finalizers that could call back into this codec.
        let claims = Py::new(py, Claims(decoded.map_err(to_py)?))?;
        let mut store = self.store();
        store.validate(claims.claims(), now, typ).map_err(to_py)?;
        if cache {
            store.insert(token, claims.clone_ref(py));
        }
        Ok(claims)
    }

    fn revoke(&self, jti: &str, exp: i64) {
        self.store().revoke(jti, exp);
    }

    fn is_revoked(&self, jti: &str) -> bool {
        self.store().is_revoked(jti)
    }

    fn revoke_user(&self, user: &str, gen: i64, until: i64) {
        self.store().revoke_user(user, gen, until);
    }

    fn user_floor(&self, user: &str) -> Option<i64> {
        self.store().floor(user).map(|floor| floor.generation)
    }

    #[pyo3(signature = (now = None))]
    fn prune(&self, now: Option<i64>) -> usize {
        let now = now.unwrap_or_else(clock::unix_seconds);
        self.store().prune(now)
    }

    fn clear_cache(&self) {
        self.store().clear_cache();
    }

    #[getter]
    fn cache_len(&self) -> usize {
        self.store().cache_len()
    }

    #[getter]
    fn revoked_len(&self) -> usize {
        self.store().revoked_len()
    }

    #[getter]
    fn floors_len(&self) -> usize {
        self.store().floors_len()
    }

    #[getter]
    fn algorithm(&self) -> &'static str {
        self.codec.algorithm().name()
    }

    fn __repr__(&self) -> String {
        format!(
            "TokenCodec(algorithm={:?}, can_sign={}, cache_len={})",
            self.codec.algorithm().name(),
            self.codec.can_sign(),
            self.cache_len()
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("TokenError", py.get_type::<TokenError>())?;
    m.add("InvalidToken", py.get_type::<InvalidToken>())?;
    m.add("ExpiredToken", py.get_type::<ExpiredToken>())?;
    m.add("RevokedToken", py.get_type::<RevokedToken>())?;
    m.add_class::<Claims>()?;
    m.add_class::<TokenCodec>()?;
    Ok(())
}
