import type { SessionData, SessionLockState } from './session-data.interface.js';
import type { SessionBagInterface } from '../bags/session-bag.interface.js';
import type { MetadataBag } from '../bags/metadata.bag.js';
import type { SessionInterface } from './session.interface.js';
import type { SessionContext } from './session.context.js';

/**
 * What `@Inject(SessionInterface)` gives: a singleton that forwards every call to the current
 * request's session. Plain forwarding methods (not a `Proxy`) keep it cheap and typed.
 * Every method throws `SessionOutsideRequestException` when no request is being handled.
 */
export class CurrentSessionProxy implements SessionInterface {
  constructor(private readonly context: SessionContext) {}

  isStarted(): boolean {
    return this.context.require('isStarted()').isStarted();
  }

  isRemote(): boolean {
    return this.context.require('isRemote()').isRemote();
  }

  start(): void {
    this.context.require('start()').start();
  }

  canBeResumed(): Promise<boolean> {
    return this.context.require('canBeResumed()').canBeResumed();
  }

  resume(): Promise<number | undefined> {
    return this.context.require('resume()').resume();
  }

  getId(): string {
    return this.context.require('getId()').getId();
  }

  getHandle(): string {
    return this.context.require('getHandle()').getHandle();
  }

  renewId(): string {
    return this.context.require('renewId()').renewId();
  }

  getData<K extends keyof SessionData & string>(key: K): Promise<SessionData[K] | undefined> {
    return this.context.require('getData()').getData(key);
  }

  hasKey(key: string): Promise<boolean> {
    return this.context.require('hasKey()').hasKey(key);
  }

  putData<K extends keyof SessionData & string>(key: K, value: SessionData[K]): Promise<void> {
    return this.context.require('putData()').putData(key, value);
  }

  removeData(key: string): Promise<void> {
    return this.context.require('removeData()').removeData(key);
  }

  getAllData(): Promise<Partial<SessionData>> {
    return this.context.require('getAllData()').getAllData();
  }

  clear(): Promise<void> {
    return this.context.require('clear()').clear();
  }

  getLastActivityTimestamp(): number {
    return this.context.require('getLastActivityTimestamp()').getLastActivityTimestamp();
  }

  addTag(tag: string): Promise<void> {
    return this.context.require('addTag()').addTag(tag);
  }

  removeTag(tag: string): Promise<void> {
    return this.context.require('removeTag()').removeTag(tag);
  }

  getTags(): string[] {
    return this.context.require('getTags()').getTags();
  }

  touch(): Promise<void> {
    return this.context.require('touch()').touch();
  }

  close(): Promise<void> {
    return this.context.require('close()').close();
  }

  destroy(reason?: string): Promise<void> {
    return this.context.require('destroy()').destroy(reason);
  }

  getName(): string {
    return this.context.require('getName()').getName();
  }

  setName(name: string): void {
    this.context.require('setName()').setName(name);
  }

  regenerate(destroy?: boolean, lifetime?: number): Promise<boolean> {
    return this.context.require('regenerate()').regenerate(destroy, lifetime);
  }

  save(): Promise<void> {
    return this.context.require('save()').save();
  }

  getLockState(): SessionLockState {
    return this.context.require('getLockState()').getLockState();
  }

  open(): Promise<void> {
    return this.context.require('open()').open();
  }

  read(): Promise<void> {
    return this.context.require('read()').read();
  }

  unlock(): Promise<void> {
    return this.context.require('unlock()').unlock();
  }

  setTTL(seconds: number): void {
    this.context.require('setTTL()').setTTL(seconds);
  }

  isNew(): boolean {
    return this.context.require('isNew()').isNew();
  }

  isAnonymous(): boolean {
    return this.context.require('isAnonymous()').isAnonymous();
  }

  getUserId(): string | undefined {
    return this.context.require('getUserId()').getUserId();
  }

  bindToUser(userId: string): void {
    this.context.require('bindToUser()').bindToUser(userId);
  }

  markAuthenticated(): void {
    this.context.require('markAuthenticated()').markAuthenticated();
  }

  getAuthenticatedAt(): number | undefined {
    return this.context.require('getAuthenticatedAt()').getAuthenticatedAt();
  }

  isPermanent(): boolean {
    return this.context.require('isPermanent()').isPermanent();
  }

  setPermanent(permanent: boolean): void {
    this.context.require('setPermanent()').setPermanent(permanent);
  }

  registerBag(bag: SessionBagInterface): void {
    this.context.require('registerBag()').registerBag(bag);
  }

  getBag<T = SessionBagInterface>(name: string): Promise<T> {
    return this.context.require('getBag()').getBag<T>(name);
  }

  getMetadataBag(): MetadataBag {
    return this.context.require('getMetadataBag()').getMetadataBag();
  }
}
