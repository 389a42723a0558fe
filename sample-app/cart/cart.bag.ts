import { AttributeBag } from 'nest-session';

/** A feature module's own bag: the cart's items, stored together under `cart`. */
export class CartBag extends AttributeBag {
  constructor() {
    super('cart', 'cart');
  }
  items(): Record<string, number> {
    return this.all() as Record<string, number>;
  }
  addItem(sku: string, quantity: number): void {
    this.set(sku, (this.get<number>(sku) ?? 0) + quantity);
  }
}
