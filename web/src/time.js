// Times as people read them: "just now", "5 minutes ago", then the date.

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' })
const exact = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' })
const dated = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' })

/** @param {string | null} iso @param {number} [now] */
export function formatWhen (iso, now = Date.now()) {
  if (!iso) return '—'
  const date = new Date(iso)
  const seconds = Math.round((date.getTime() - now) / 1000)
  const magnitude = Math.abs(seconds)
  if (magnitude < 45) return 'just now'
  if (magnitude < 3600) return relative.format(Math.round(seconds / 60), 'minute')
  if (magnitude < 86400) return relative.format(Math.round(seconds / 3600), 'hour')
  return dated.format(date)
}

/** @param {string | null} iso */
export function formatExact (iso) {
  return iso ? exact.format(new Date(iso)) : ''
}
