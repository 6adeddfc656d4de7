// Who you are to the others: a name and a colour, asked once, kept in
// localStorage, editable at any time. Published in the awareness state as
// `user: { name, color, colorLight }` — the y-codemirror convention, which the
// server's document list reads too.
//
// Everyone else's name and colour are data from strangers (any client can put
// anything in its awareness state): `safeUser` turns them into a bounded name
// and a `#rrggbb` colour before anything paints them (cursors, avatars, lists).

import { h } from './dom.js'

const STORAGE_KEY = 'collab.user'
export const MAX_NAME_LENGTH = 40
/** Whose colour is not a `#rrggbb` one is shown in this grey. */
export const DEFAULT_COLOR = '#6b7280'
const COLOR = /^#[0-9a-f]{6}$/i
// Characters a name does not need: controls, and the invisible and direction-
// changing marks that would let one name pass for another (ZWJ/ZWNJ stay, for emoji).
const UNSHOWN = /[\p{Cc}\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]/gu

// Dark enough that a white name label on them stays readable.
export const PALETTE = [
  '#c2410c', '#b91c1c', '#be185d', '#7e22ce', '#4338ca',
  '#1d4ed8', '#0e7490', '#047857', '#4d7c0f', '#a16207'
]
const ADJECTIVES = [
  'Amber', 'Brave', 'Bright', 'Calm', 'Clever', 'Curious', 'Gentle', 'Happy',
  'Keen', 'Lucky', 'Merry', 'Nimble', 'Quiet', 'Quick', 'Sunny', 'Witty'
]
const ANIMALS = [
  'Badger', 'Crane', 'Dolphin', 'Falcon', 'Fox', 'Heron', 'Koala', 'Lynx',
  'Otter', 'Owl', 'Panda', 'Puffin', 'Raven', 'Seal', 'Tiger', 'Wren'
]

/** @template T @param {T[]} items @returns {T} */
const pick = (items) => items[Math.floor(Math.random() * items.length)]

/** @typedef {{ name: string, color: string, colorLight: string }} User */

/** @param {string} name @param {string} color @returns {User} */
export function makeUser (name, color) {
  // Yjs cursor convention: colorLight tints the remote selection.
  return { name, color, colorLight: color + '33' }
}

/**
 * A colour another client sent, fit for a style property: `#rrggbb`, else the default.
 * @param {unknown} value
 */
export function safeColor (value) {
  return typeof value === 'string' && COLOR.test(value) ? value.toLowerCase() : DEFAULT_COLOR
}

/**
 * A name another client sent, fit to show: one line, at most MAX_NAME_LENGTH
 * characters (a longer one ends in …), '' when nothing is left.
 * @param {unknown} value
 */
export function safeName (value) {
  if (typeof value !== 'string') return ''
  // Bound the work first: a name may be megabytes long.
  const cleaned = value.slice(0, MAX_NAME_LENGTH * 8).replace(/\s+/g, ' ').replace(UNSHOWN, '').trim()
  const characters = Array.from(cleaned)
  return characters.length > MAX_NAME_LENGTH
    ? characters.slice(0, MAX_NAME_LENGTH - 1).join('').trimEnd() + '…'
    : cleaned
}

/**
 * The `user` of someone's awareness state (or of the server's `present` list),
 * made safe to paint; null when it has no name to show.
 * @param {unknown} value
 * @returns {User | null}
 */
export function safeUser (value) {
  if (value == null || typeof value !== 'object') return null
  const { name, color } = /** @type {{ name?: unknown, color?: unknown }} */ (value)
  const shown = safeName(name)
  return shown ? makeUser(shown, safeColor(color)) : null
}

export function generateUser () {
  return makeUser(`${pick(ADJECTIVES)} ${pick(ANIMALS)}`, pick(PALETTE))
}

/** @returns {{ user: User, isNew: boolean }} */
export function loadUser () {
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || 'null')
    if (saved && typeof saved.name === 'string' && saved.name.trim() &&
        typeof saved.color === 'string' && /^#[0-9a-f]{6}$/i.test(saved.color)) {
      return { user: makeUser(saved.name.trim().slice(0, MAX_NAME_LENGTH), saved.color), isNew: false }
    }
  } catch {
    // unreadable or blocked storage: start afresh
  }
  return { user: generateUser(), isNew: true }
}

/** @param {User} user */
export function saveUser (user) {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify({ name: user.name, color: user.color }))
  } catch {
    // storage blocked (private mode): the name still holds for this page
  }
}

/**
 * Ask for a name and colour in the page's <dialog id="user-dialog">.
 * Resolves with the chosen user (or `current` if the dialog is dismissed).
 * @param {HTMLDialogElement} dialog
 * @param {User} current
 * @returns {Promise<User>}
 */
export function askUser (dialog, current) {
  const form = /** @type {HTMLFormElement} */ (dialog.querySelector('form'))
  const nameInput = /** @type {HTMLInputElement} */ (form.elements.namedItem('name'))
  const swatches = /** @type {HTMLElement} */ (dialog.querySelector('.swatch-list'))
  nameInput.maxLength = MAX_NAME_LENGTH
  nameInput.value = current.name
  const colors = PALETTE.includes(current.color) ? PALETTE : [current.color, ...PALETTE]
  swatches.replaceChildren(...colors.map((color, index) => h('label', { class: 'swatch', style: { '--swatch': color } },
    h('input', {
      type: 'radio',
      name: 'color',
      value: color,
      checked: color === current.color,
      'aria-label': `colour ${index + 1}`
    }))))
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      const name = nameInput.value.trim().slice(0, MAX_NAME_LENGTH)
      const color = /** @type {HTMLInputElement | null} */ (form.querySelector('input[name=color]:checked'))?.value
      const chosen = dialog.returnValue === 'save' && name && color ? makeUser(name, color) : current
      saveUser(chosen)
      resolve(chosen)
    }, { once: true })
    dialog.returnValue = ''
    dialog.showModal()
    nameInput.select()
  })
}
