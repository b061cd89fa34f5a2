// The one place the server's address lives.
//
// Development: `make run` serves wxlogin on http://127.0.0.1:8888. The simulator may call it
// because project.config.json turns urlCheck off ("不校验合法域名"). To try on a phone, use
// this computer's LAN address instead of 127.0.0.1 and enable debug mode on the phone.
//
// Production: mini-programs may only call HTTPS domains registered in the console
// (mp.weixin.qq.com → 开发管理 → 开发设置 → 服务器域名): put this domain under both
// "request合法域名" and "uploadFile合法域名", e.g. baseUrl: 'https://api.example.com'.
// No trailing slash.
module.exports = {
  baseUrl: 'http://127.0.0.1:8888'
};
