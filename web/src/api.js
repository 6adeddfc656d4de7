// The server's REST API and the page URLs, carrying the access token.
//
// A token given as ?token= on a page URL is kept on every link between pages,
// sent as `Authorization: Bearer` on every REST call and as ?token= on the
// WebSocket (the y-websocket provider's params).

export const token = new URLSearchParams(location.search).get('token') || ''

/** Same as the server's rule (collab/protocol/names.py): not made only of dots,
 * which browsers and proxies resolve into other paths. */
export const DOCUMENT_NAME = /^(?!\.+$)[A-Za-z0-9._:-]{1,128}$/
export const DOCUMENT_NAME_RULE = '1–128 letters, digits, or . _ : - (no spaces; not only dots)'

/** @param {string} path */
export function pageUrl (path) {
  return token ? `${path}?token=${encodeURIComponent(token)}` : path
}

/** @param {string} name */
export function editorUrl (name) {
  return pageUrl('/d/' + encodeURIComponent(name))
}

/** @param {string} name */
export function documentApi (name) {
  return '/api/documents/' + encodeURIComponent(name)
}

export function webSocketBase () {
  return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws'
}

export class ApiError extends Error {
  /** @param {number} status 0 when the server could not be reached @param {string} detail */
  constructor (status, detail) {
    super(detail)
    this.status = status
  }
}

/**
 * @param {string} path
 * @param {{ method?: string, json?: any, signal?: AbortSignal }} [options]
 * @returns {Promise<any>} the parsed JSON body (null for 204)
 */
export async function api (path, { method = 'GET', json, signal } = {}) {
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json' }
  if (token) headers.Authorization = `Bearer ${token}`
  let body
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json'
    body = JSON.stringify(json)
  }
  let response
  try {
    response = await fetch(path, { method, headers, body, signal })
  } catch (error) {
    if (signal?.aborted) throw error
    throw new ApiError(0, 'could not reach the server')
  }
  if (!response.ok) throw new ApiError(response.status, await errorDetail(response))
  return response.status === 204 ? null : response.json()
}

/** @param {Response} response */
async function errorDetail (response) {
  try {
    const { detail } = await response.json()
    if (typeof detail === 'string') return detail
    if (Array.isArray(detail)) return detail.map((d) => d.msg).join('; ') // FastAPI's 422
  } catch {
    // not JSON: fall through to the status text
  }
  return `${response.status} ${response.statusText}`.trim()
}

/**
 * What to tell a person about a failed call: refusals by the access rules get
 * their own words (the server's detail says which rule).
 * @param {unknown} error
 */
export function describeError (error) {
  if (error instanceof ApiError && error.status === 401) {
    return 'this server needs an access token: open the link you were given (it ends in ?token=…)'
  }
  if (error instanceof ApiError && error.status === 403) return `not allowed (${error.message})`
  return error instanceof Error ? error.message : String(error)
}

/**
 * What this page's token allows (GET /api/access): 'read' (view only), 'write'
 * (edit, save versions) or 'admin' (also restore). An open server gives everyone
 * admin. Which documents it covers is the server's to enforce: the WebSocket of
 * a document the token does not cover is refused (4403), and the page says so.
 * @returns {Promise<'read' | 'write' | 'admin'>}
 */
export async function accessRole () {
  return (await api('/api/access')).role
}
