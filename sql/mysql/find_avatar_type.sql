SELECT content_type FROM avatar WHERE hash = ?
