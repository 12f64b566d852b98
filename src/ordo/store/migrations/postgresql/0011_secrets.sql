-- Secrets (ordo secrets set NAME): only their ciphertext is kept, encrypted with a key
-- the store never sees (ORDO_SECRET_KEY or $ORDO_HOME/secret.key).
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    ciphertext TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
