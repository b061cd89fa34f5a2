// utils/time.js — dates from the server (RFC 3339) as the user reads them, in the phone's time zone.

function pad(n) {
  return (n < 10 ? '0' : '') + n;
}

// "2024-05-01T08:30:00Z" → "2024-05-01 16:30" on a phone in China; the text as is when it is not
// a date (better an odd string than "NaN-NaN").
function formatTime(rfc3339) {
  const date = new Date(rfc3339);
  if (!rfc3339 || isNaN(date.getTime())) {
    return String(rfc3339 || '');
  }
  return date.getFullYear() + '-' + pad(date.getMonth() + 1) + '-' + pad(date.getDate()) +
    ' ' + pad(date.getHours()) + ':' + pad(date.getMinutes());
}

module.exports = { formatTime: formatTime };
