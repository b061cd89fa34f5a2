SELECT user_id, unionid, nickName, avatar, gender, phoneNumber, purePhoneNumber, countryCode
FROM wxuser WHERE user_id = ?
