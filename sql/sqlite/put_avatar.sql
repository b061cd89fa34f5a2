-- Content-addressed: a second upload of the same bytes changes nothing.
INSERT INTO avatar (hash, content_type, bytes) VALUES (?1, ?2, ?3)
ON CONFLICT (hash) DO NOTHING
