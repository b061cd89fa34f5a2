UPDATE wxuser
SET phoneNumber = ?, purePhoneNumber = ?, countryCode = ?, updated_at = CURRENT_TIMESTAMP(3)
WHERE user_id = ?
