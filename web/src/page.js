// What the server said about this page when it served it: collab/api/web_client.py
// fills these marks in on every response (web/build.mjs leaves them in the pages).
//
// - The nonce of this response's Content-Security-Policy, which allows no inline
//   style otherwise: CodeMirror puts its styles in <style> elements it creates at
//   run time, and gives them this nonce (EditorView.cspNonce).
// - Whether the Markdown preview may load images from other sites
//   (COLLAB_ALLOW_REMOTE_IMAGES); the policy's img-src says the same.

/**
 * The nonce <style> elements need on this page ('' when it has none). The
 * stylesheet link carries it; the browser hides the attribute's value from the
 * page's CSS once it has read it, but keeps it in the `nonce` property.
 */
export function styleNonce () {
  const carrier = document.querySelector('link[rel=stylesheet][nonce]')
  return carrier instanceof HTMLElement ? carrier.nonce : ''
}

/** Whether images from other sites may be shown (off unless the server says so). */
export function remoteImagesAllowed () {
  return document.querySelector('meta[name="collab-remote-images"]')?.getAttribute('content') === 'allowed'
}
