-- Content-addressed: a second upload of the same bytes changes nothing.
INSERT INTO avatar (hash, content_type, bytes) VALUES (?, ?, ?)
ON DUPLICATE KEY UPDATE hash = hash
