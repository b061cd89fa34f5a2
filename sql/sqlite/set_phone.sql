UPDATE wxuser
SET phoneNumber = ?1, purePhoneNumber = ?2, countryCode = ?3,
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE user_id = ?4
