SELECT content_type, bytes FROM avatar WHERE hash = ?
