// Building DOM from data without innerHTML: every string other people wrote
// (names, labels, document text) becomes a text node, never markup.

/**
 * h('button', { class: 'x', onclick: fn }, 'Label', child)
 * @param {string} tag
 * @param {Record<string, any>} [props]
 * @param {...any} children strings, nodes, arrays of them; null/false are skipped
 * @returns {HTMLElement}
 */
export function h (tag, props = {}, ...children) {
  const element = document.createElement(tag)
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue
    if (key === 'class') element.className = value
    else if (key === 'style') {
      for (const [property, v] of Object.entries(value)) element.style.setProperty(cssName(property), v)
    }
    else if (key === 'dataset') Object.assign(element.dataset, value)
    else if (key.startsWith('on')) element.addEventListener(key.slice(2), value)
    else element.setAttribute(key, value === true ? '' : String(value))
  }
  element.append(...children.flat(Infinity).filter((c) => c != null && c !== false))
  return element
}

/** @param {string} id */
export function byId (id) {
  const element = document.getElementById(id)
  if (!element) throw new Error(`#${id} is missing from the page`)
  return element
}

/** @param {string} property 'backgroundColor' or '--custom' -> CSS's spelling */
function cssName (property) {
  return property.startsWith('--') ? property : property.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())
}
