'use strict';
// `npm install`'s check: the addon must load here, or the install fails
// now, with the reason, instead of at the first require().
try {
  require('./binding');
} catch (e) {
  console.error(String(e && e.message || e));
  process.exit(1);
}
