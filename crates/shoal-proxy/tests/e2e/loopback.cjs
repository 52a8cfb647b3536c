// Preload (node --require): every server socket binds 127.0.0.1, whatever the package asks for.
const net = require('net');
const orig = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'object' && args[0] !== null) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  } else if (typeof args[0] === 'number' || typeof args[0] === 'string') {
    const port = args[0];
    const rest = args.slice(1).filter((a) => typeof a === 'function');
    return orig.call(this, { port: Number(port), host: '127.0.0.1' }, ...rest);
  }
  return orig.apply(this, args);
};
