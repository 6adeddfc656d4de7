// Who is here: avatars (colour + initial) and the editor's presence bar,
// re-rendered on every awareness change, so joins and leaves show at once.
// Names and colours are other people's: they go through identity.js safeUser.

import { h } from './dom.js'
import { safeColor, safeUser } from './identity.js'

/** @param {string} name */
export function initial (name) {
  const first = Array.from(name.trim())[0]
  return first ? first.toUpperCase() : '?'
}

/**
 * @param {{ name: string, color: string }} user
 * @param {{ label?: string }} [options]
 */
export function avatar (user, { label } = {}) {
  return h('span', {
    class: 'avatar',
    style: { background: safeColor(user.color) },
    title: label ?? user.name,
    'aria-hidden': 'true'
  }, initial(user.name))
}

/**
 * The people in a document from its awareness states: one entry per distinct
 * name and colour (one person in two tabs is one person), you first.
 * @param {import('y-protocols/awareness').Awareness} awareness
 */
export function peopleIn (awareness) {
  const selfId = awareness.clientID
  /** @type {Map<string, { name: string, color: string, isSelf: boolean }>} */
  const people = new Map()
  for (const [clientId, state] of awareness.getStates()) {
    const user = safeUser(state?.user)
    if (!user) continue
    const key = JSON.stringify([user.name, user.color])
    const isSelf = clientId === selfId || people.get(key)?.isSelf === true
    people.set(key, { name: user.name, color: user.color, isSelf })
  }
  return [...people.values()].sort((a, b) =>
    Number(b.isSelf) - Number(a.isSelf) || a.name.localeCompare(b.name))
}

/**
 * Keep `list` (a <ul>) showing everyone in the document.
 * @param {HTMLElement} list
 * @param {import('y-protocols/awareness').Awareness} awareness
 * @param {() => void} onEditSelf opens the name and colour dialog
 */
export function bindPresenceBar (list, awareness, onEditSelf) {
  const render = () => {
    const people = peopleIn(awareness)
    list.replaceChildren(...people.map((person) => {
      const label = person.isSelf ? `${person.name} (you)` : person.name
      const content = [
        avatar(person, { label }),
        h('span', { class: 'presence-name' }, person.name),
        person.isSelf ? h('span', { class: 'presence-you' }, '(you)') : null
      ]
      return h('li', { class: person.isSelf ? 'presence-person is-self' : 'presence-person', dataset: { name: person.name } },
        person.isSelf
          ? h('button', { type: 'button', class: 'presence-self', title: 'Change your name and colour', onclick: onEditSelf }, content)
          : content)
    }))
    list.setAttribute('aria-label', `${people.length} ${people.length === 1 ? 'person' : 'people'} in this document`)
  }
  awareness.on('change', render)
  render()
}
